//! ApiVersions: what Floe speaks. Only implemented and tested versions are listed.

use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use crate::error::Code;

fn versions() -> Vec<ApiVersion> {
    super::SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect()
}

pub fn response() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = versions();
    r
}

/// The KIP-511 answer to a version newer than we support.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    let mut r = response();
    r.error_code = Code::UnsupportedVersion.code();
    r
}
