//! Provisioning for development and emulators (`floe init`): the S3 bucket
//! and the DynamoDB table, created as the CloudFormation template in `infra/`
//! declares them (`gateway/tests/infra_template.rs` keeps the two in
//! agreement). Production deployments use the template; the runtime stores
//! never create anything.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

use crate::aws::{classify, code, load_sdk_config, status};
use crate::error::{Error, Result};
use crate::meta::dynamodb::TTL_ATTRIBUTE;
use crate::object_store::S3Store;

/// Creates `bucket` and `table`; safe to run twice.
pub async fn create_aws_resources(
    bucket: &str,
    table: &str,
    endpoint: Option<&str>,
    region: Option<&str>,
) -> Result<()> {
    let config = load_sdk_config(endpoint, region).await;
    create_bucket(&S3Store::client(&config, endpoint.is_some()), bucket).await?;
    create_table(&aws_sdk_dynamodb::Client::new(&config), table).await
}

/// Creates the bucket (for `floe init`) with the settings that
/// `infra/cloudformation/floe-storage.json` declares (`gateway/tests/infra_template.rs`
/// checks they agree): all public access blocked, SSE-S3 default encryption, and
/// a lifecycle rule aborting multipart uploads left incomplete for a day (Floe
/// writes single PUTs, so only a foreign or crashed client leaves them; they cost
/// storage until aborted). No versioning: Floe never overwrites a key.
///
/// Safe to run again: a bucket this account owns is accepted; a default
/// encryption the bucket already has is kept (it may be SSE-KMS, which is
/// stronger); Floe's lifecycle rule is added beside the rules already there
/// (a PUT replaces the whole lifecycle configuration).
pub async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
        LifecycleRule, LifecycleRuleFilter, PublicAccessBlockConfiguration, ServerSideEncryption,
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    /// The lifecycle rule's id, the same as in the CloudFormation template.
    const ABORT_RULE_ID: &str = "floe-abort-incomplete-multipart-uploads";
    const ABORT_AFTER_DAYS: i32 = 1;

    let what = |op: &str| format!("s3 {op} {bucket}");
    let built = |e: aws_sdk_s3::error::BuildError| Error::Internal(format!("s3 request: {e}"));
    let region = client
        .config()
        .region()
        .map(|r| r.as_ref().to_string())
        .unwrap_or_default();
    let mut req = client.create_bucket().bucket(bucket);
    if !region.is_empty() && region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    region.as_str(),
                ))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => {}
        Err(e) if code(&e) == Some("BucketAlreadyOwnedByYou") => {}
        Err(e) => return Err(classify(&what("CreateBucket"), e)),
    }

    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| classify(&what("PutPublicAccessBlock"), e))?;

    let encrypted = match client.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => out
            .server_side_encryption_configuration()
            .is_some_and(|c| !c.rules().is_empty()),
        Err(e)
            if code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError")
                || status(&e) == Some(404) =>
        {
            false
        }
        Err(e) => return Err(classify(&what("GetBucketEncryption"), e)),
    };
    if !encrypted {
        let sse = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build()
            .map_err(built)?;
        client
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(sse)
                            .build(),
                    )
                    .build()
                    .map_err(built)?,
            )
            .send()
            .await
            .map_err(|e| classify(&what("PutBucketEncryption"), e))?;
    }

    let mut rules = match client
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => out.rules().to_vec(),
        Err(e) if code(&e) == Some("NoSuchLifecycleConfiguration") || status(&e) == Some(404) => {
            Vec::new()
        }
        Err(e) => return Err(classify(&what("GetBucketLifecycleConfiguration"), e)),
    };
    if !rules.iter().any(|r| r.id() == Some(ABORT_RULE_ID)) {
        rules.push(
            LifecycleRule::builder()
                .id(ABORT_RULE_ID)
                .status(ExpirationStatus::Enabled)
                // An empty prefix: every object of the bucket.
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(ABORT_AFTER_DAYS)
                        .build(),
                )
                .build()
                .map_err(built)?,
        );
        client
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .map_err(built)?,
            )
            .send()
            .await
            .map_err(|e| classify(&what("PutBucketLifecycleConfiguration"), e))?;
    }
    Ok(())
}

/// Creates the table (for `floe init`): `pk` S HASH, `sk` S RANGE, on-demand
/// billing, TTL on `expires_at`. Succeeds if it already exists; waits until it is
/// active (at most two minutes).
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<()> {
    let what = |op: &str| format!("dynamodb {op} on table {table}");
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(ddb_build_err)
    };
    let key_el = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(ddb_build_err)
    };
    let r = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key_el("pk", KeyType::Hash)?)
        .key_schema(key_el("sk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match r {
        Ok(_) => {}
        Err(e) if code(&e) == Some("ResourceInUseException") => {}
        Err(e) => return Err(classify(&what("CreateTable"), e)),
    }
    let mut active = false;
    for _ in 0..120 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify(&what("DescribeTable"), e))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            active = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    if !active {
        return Err(Error::Unavailable(format!(
            "{}: not active after two minutes",
            what("CreateTable")
        )));
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| classify(&what("DescribeTimeToLive"), e))?;
    let status = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status());
    if !matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(ddb_build_err)?,
            )
            .send()
            .await
            .map_err(|e| classify(&what("UpdateTimeToLive"), e))?;
    }
    Ok(())
}

fn ddb_build_err(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Internal(format!("dynamodb request: {e}"))
}
