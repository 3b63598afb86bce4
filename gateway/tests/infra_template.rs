//! The CloudFormation template `infra/cloudformation/floe-storage.json` against the
//! code it deploys for:
//!
//! - `floe_init_creates_what_the_template_declares` (moto): runs the real `floe init
//!   --backend aws`, reads the bucket and table back with the SDK (DescribeTable,
//!   DescribeTimeToLive, GetPublicAccessBlock, GetBucketEncryption,
//!   GetBucketLifecycleConfiguration, GetBucketVersioning) and compares them field
//!   by field with the template and with `localstack/table.json`.
//! - `gateway_policy_grants_exactly_what_the_code_calls`: derives the IAM actions
//!   from the SDK calls in the source of the crates linked into `floe` and checks
//!   the template's managed policy grants exactly those, on the right resources.
//! - `table_json_and_code_agree_with_the_template`: `localstack/table.json` and
//!   `TTL_ATTRIBUTE` against the template, without an emulator.
//!
//! Every property of the template's bucket and table is either compared here or
//! listed in `PRODUCTION_ONLY_PROPERTIES` with its reason; a property in neither
//! fails the test, so the template cannot drift from `floe init` unnoticed.
//!
//! The moto test is ignored by default; `scripts/test-all.sh` runs it with
//! `--run-ignored all` and `FLOE_TEST_MOTO_ENDPOINT` set. Run that way without
//! the variable, it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aws_sdk_dynamodb::Client as DdbClient;
use aws_sdk_s3::Client as S3Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use serde_json::{Map, Value, json};

const TEMPLATE: &str = "infra/cloudformation/floe-storage.json";
const TABLE_JSON: &str = "localstack/table.json";

/// Template properties that `floe init` deliberately does not set, with why. They
/// are production safety nets with no use on a development or emulator table.
const PRODUCTION_ONLY_PROPERTIES: &[(&str, &str, &str)] = &[
    (
        "AWS::DynamoDB::Table",
        "PointInTimeRecoverySpecification",
        "continuous backups: billed per GB-month, pointless for a scratch table",
    ),
    (
        "AWS::DynamoDB::Table",
        "DeletionProtectionEnabled",
        "would stop tests and developers from deleting their tables",
    ),
];

/// Template resources that `floe init` does not create, with why.
const PRODUCTION_ONLY_RESOURCES: &[(&str, &str)] = &[(
    "AWS::S3::BucketPolicy",
    "denies plain-HTTP requests; emulators are reached over http",
)];

/// Properties compared with what `floe init` creates.
const TABLE_COMPARED: &[&str] = &[
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "TimeToLiveSpecification",
];
const BUCKET_COMPARED: &[&str] = &[
    "BucketName",
    "PublicAccessBlockConfiguration",
    "BucketEncryption",
    "LifecycleConfiguration",
];

// ---------------------------------------------------------------- template files

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway/ has a parent")
        .to_path_buf()
}

fn read_json(rel: &str) -> Value {
    let path = workspace_root().join(rel);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

/// The one resource of type `ty` in the template: (logical id, resource).
fn resource<'a>(template: &'a Value, ty: &str) -> (&'a str, &'a Value) {
    let found: Vec<_> = resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{TEMPLATE} must declare exactly one {ty}, has {}",
        found.len()
    );
    (found[0].0.as_str(), found[0].1)
}

fn resources(template: &Value) -> &Map<String, Value> {
    template["Resources"]
        .as_object()
        .unwrap_or_else(|| panic!("{TEMPLATE} has no Resources object"))
}

fn properties<'a>(res: &'a Value, what: &str) -> &'a Map<String, Value> {
    res["Properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{what} has no Properties"))
}

/// Fails unless every key of `obj` is in `known`, naming the stray keys.
#[track_caller]
fn only_keys(obj: &Map<String, Value>, known: &[&str], what: &str) {
    let stray: Vec<_> = obj
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    assert!(
        stray.is_empty(),
        "{what} has {stray:?}, which this test does not compare with `floe init`: compare it \
         (and make `floe init` create it) or list it in PRODUCTION_ONLY_PROPERTIES"
    );
}

/// Checks that every resource and property of the template is accounted for.
fn check_inventory(template: &Value) {
    let mut known_types = vec![
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::IAM::ManagedPolicy",
    ];
    known_types.extend(PRODUCTION_ONLY_RESOURCES.iter().map(|(t, _)| *t));
    for (id, r) in resources(template) {
        let ty = r["Type"].as_str().unwrap_or("?");
        assert!(
            known_types.contains(&ty),
            "resource {id} ({ty}) is neither compared with `floe init` nor listed in \
             PRODUCTION_ONLY_RESOURCES"
        );
    }
    for (ty, compared) in [
        ("AWS::DynamoDB::Table", TABLE_COMPARED),
        ("AWS::S3::Bucket", BUCKET_COMPARED),
    ] {
        let (id, r) = resource(template, ty);
        let props = properties(r, id);
        let mut known = compared.to_vec();
        known.extend(
            PRODUCTION_ONLY_PROPERTIES
                .iter()
                .filter(|(t, _, _)| *t == ty)
                .map(|(_, p, _)| *p),
        );
        only_keys(props, &known, &format!("{ty} {id}"));
        for p in compared {
            assert!(props.contains_key(*p), "{ty} {id} lacks {p}");
        }
    }
}

// ---------------------------------------------------------------- table definitions

/// A table definition in the terms the three sources share.
#[derive(Debug, PartialEq)]
struct TableDef {
    /// (attribute, HASH | RANGE), in key order.
    key_schema: Vec<(String, String)>,
    /// (attribute, S | N | B).
    attributes: BTreeSet<(String, String)>,
    billing_mode: String,
    /// (attribute, enabled).
    ttl: Option<(String, bool)>,
}

fn str_field<'a>(v: &'a Value, field: &str, what: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {field} is not a string: {}", v[field]))
}

fn pairs(list: &Value, a: &str, b: &str, what: &str) -> Vec<(String, String)> {
    list.as_array()
        .unwrap_or_else(|| panic!("{what} is not a list"))
        .iter()
        .map(|e| {
            let obj = e
                .as_object()
                .unwrap_or_else(|| panic!("{what}: {e} is not an object"));
            only_keys(obj, &[a, b], what);
            (
                str_field(e, a, what).to_string(),
                str_field(e, b, what).to_string(),
            )
        })
        .collect()
}

/// From a CreateTable body (CloudFormation properties and the API share these
/// names) and a TimeToLiveSpecification.
fn table_def_from_json(create: &Value, ttl: Option<&Value>, what: &str) -> TableDef {
    let ttl = ttl.map(|t| {
        let obj = t
            .as_object()
            .unwrap_or_else(|| panic!("{what}: TTL is not an object"));
        only_keys(obj, &["AttributeName", "Enabled"], what);
        let enabled = t["Enabled"]
            .as_bool()
            .unwrap_or_else(|| panic!("{what}: TTL Enabled is not a boolean"));
        (str_field(t, "AttributeName", what).to_string(), enabled)
    });
    TableDef {
        key_schema: pairs(&create["KeySchema"], "AttributeName", "KeyType", what),
        attributes: pairs(
            &create["AttributeDefinitions"],
            "AttributeName",
            "AttributeType",
            what,
        )
        .into_iter()
        .collect(),
        billing_mode: str_field(create, "BillingMode", what).to_string(),
        ttl,
    }
}

fn template_table(template: &Value) -> TableDef {
    let (id, r) = resource(template, "AWS::DynamoDB::Table");
    let props = &r["Properties"];
    assert_eq!(
        props["TableName"],
        json!({ "Ref": "TableName" }),
        "{id} is named by the TableName parameter"
    );
    table_def_from_json(props, props.get("TimeToLiveSpecification"), id)
}

fn table_json_def(spec: &Value) -> TableDef {
    let obj = spec
        .as_object()
        .unwrap_or_else(|| panic!("{TABLE_JSON} is not an object"));
    only_keys(obj, &["CreateTable", "UpdateTimeToLive"], TABLE_JSON);
    let create = &spec["CreateTable"];
    let keys = create
        .as_object()
        .unwrap_or_else(|| panic!("{TABLE_JSON}: CreateTable is not an object"));
    only_keys(
        keys,
        &[
            "TableName",
            "AttributeDefinitions",
            "KeySchema",
            "BillingMode",
        ],
        TABLE_JSON,
    );
    table_def_from_json(
        create,
        spec.pointer("/UpdateTimeToLive/TimeToLiveSpecification"),
        TABLE_JSON,
    )
}

async fn described_table(ddb: &DdbClient, table: &str) -> TableDef {
    let d = ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("DescribeTable");
    let t = d.table().expect("DescribeTable has a table");
    assert_eq!(
        t.table_status().map(|s| s.as_str()),
        Some("ACTIVE"),
        "floe init waits until the table is active"
    );
    assert!(
        t.global_secondary_indexes().is_empty() && t.local_secondary_indexes().is_empty(),
        "floe init creates no secondary index (the template declares none)"
    );
    assert!(
        t.stream_specification().is_none_or(|s| !s.stream_enabled()),
        "floe init enables no stream (the template declares none)"
    );
    let ttl = ddb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .expect("DescribeTimeToLive");
    let ttl = ttl.time_to_live_description().and_then(|d| {
        let enabled = match d.time_to_live_status()?.as_str() {
            "ENABLED" | "ENABLING" => true,
            "DISABLED" | "DISABLING" => false,
            other => panic!("TTL status {other}"),
        };
        Some((d.attribute_name()?.to_string(), enabled))
    });
    TableDef {
        key_schema: t
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect(),
        attributes: t
            .attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name().to_string(),
                    a.attribute_type().as_str().to_string(),
                )
            })
            .collect(),
        // DynamoDB omits the summary for tables that were always provisioned.
        billing_mode: t
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map_or("PROVISIONED", |b| b.as_str())
            .to_string(),
        ttl,
    }
}

// ---------------------------------------------------------------- bucket definitions

#[derive(Debug, PartialEq)]
struct BucketDef {
    /// BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets.
    public_access_block: [bool; 4],
    /// Default encryption rules: (algorithm, KMS key).
    encryption: Vec<(String, Option<String>)>,
    lifecycle: Vec<RuleDef>,
    versioning_enabled: bool,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RuleDef {
    id: String,
    enabled: bool,
    /// The key prefix the rule applies to ("" = every object); `None` for any
    /// other filter (tags, sizes).
    prefix: Option<String>,
    abort_incomplete_upload_days: Option<i32>,
    /// Expiration or transitions: anything that deletes or moves objects.
    moves_or_deletes_objects: bool,
}

fn template_bucket(template: &Value) -> BucketDef {
    let (id, r) = resource(template, "AWS::S3::Bucket");
    let props = &r["Properties"];
    assert_eq!(
        props["BucketName"],
        json!({ "Ref": "BucketName" }),
        "{id} is named by the BucketName parameter"
    );
    let pab = &props["PublicAccessBlockConfiguration"];
    let flag = |k: &str| {
        pab[k]
            .as_bool()
            .unwrap_or_else(|| panic!("{id}: PublicAccessBlockConfiguration.{k} is not set"))
    };
    let pab_obj = pab
        .as_object()
        .unwrap_or_else(|| panic!("{id}: PublicAccessBlockConfiguration"));
    let pab_keys = [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ];
    only_keys(pab_obj, &pab_keys, id);
    let enc_obj = props["BucketEncryption"]
        .as_object()
        .unwrap_or_else(|| panic!("{id}: BucketEncryption"));
    only_keys(enc_obj, &["ServerSideEncryptionConfiguration"], id);
    let encryption = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        .as_array()
        .unwrap_or_else(|| panic!("{id}: ServerSideEncryptionConfiguration is not a list"))
        .iter()
        .map(|rule| {
            only_keys(
                rule.as_object().expect("encryption rule"),
                &["ServerSideEncryptionByDefault"],
                id,
            );
            let d = &rule["ServerSideEncryptionByDefault"];
            only_keys(
                d.as_object().expect("ServerSideEncryptionByDefault"),
                &["SSEAlgorithm", "KMSMasterKeyID"],
                id,
            );
            (
                str_field(d, "SSEAlgorithm", id).to_string(),
                d["KMSMasterKeyID"].as_str().map(str::to_string),
            )
        })
        .collect();
    let lc_obj = props["LifecycleConfiguration"]
        .as_object()
        .unwrap_or_else(|| panic!("{id}: LifecycleConfiguration"));
    only_keys(lc_obj, &["Rules"], id);
    let mut lifecycle: Vec<RuleDef> = props["LifecycleConfiguration"]["Rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{id}: LifecycleConfiguration.Rules is not a list"))
        .iter()
        .map(|rule| {
            only_keys(
                rule.as_object().expect("lifecycle rule"),
                &["Id", "Status", "Prefix", "AbortIncompleteMultipartUpload"],
                &format!("{id} lifecycle rule"),
            );
            RuleDef {
                id: str_field(rule, "Id", id).to_string(),
                enabled: str_field(rule, "Status", id) == "Enabled",
                prefix: Some(rule["Prefix"].as_str().unwrap_or("").to_string()),
                abort_incomplete_upload_days: rule
                    .pointer("/AbortIncompleteMultipartUpload/DaysAfterInitiation")
                    .and_then(Value::as_i64)
                    .map(|d| i32::try_from(d).expect("days fit i32")),
                moves_or_deletes_objects: false,
            }
        })
        .collect();
    lifecycle.sort();
    BucketDef {
        public_access_block: pab_keys.map(flag),
        encryption,
        lifecycle,
        // VersioningConfiguration would have failed the inventory check.
        versioning_enabled: false,
    }
}

async fn described_bucket(s3: &S3Client, bucket: &str) -> BucketDef {
    let pab = s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .expect("GetPublicAccessBlock");
    let pab = pab
        .public_access_block_configuration()
        .expect("a public access block");
    let enc = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .expect("GetBucketEncryption");
    let encryption = enc
        .server_side_encryption_configuration()
        .expect("an encryption configuration")
        .rules()
        .iter()
        .map(|r| {
            let d = r
                .apply_server_side_encryption_by_default()
                .expect("a default encryption");
            (
                d.sse_algorithm().as_str().to_string(),
                d.kms_master_key_id().map(str::to_string),
            )
        })
        .collect();
    let lc = s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
        .expect("GetBucketLifecycleConfiguration");
    let mut lifecycle: Vec<RuleDef> = lc.rules().iter().map(rule_def).collect();
    lifecycle.sort();
    let versioning_enabled = match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(v) => v.status().map(|s| s.as_str()) == Some("Enabled"),
        // moto answers a bucket that was never versioned with an empty
        // `<GetBucketVersioningResponse/>` the SDK cannot decode: no status.
        Err(e)
            if e.raw_response().is_some_and(|r| {
                r.status().as_u16() == 200
                    && r.body()
                        .bytes()
                        .is_some_and(|b| !String::from_utf8_lossy(b).contains("<Status>"))
            }) =>
        {
            false
        }
        Err(e) => panic!("GetBucketVersioning: {e:?}"),
    };
    BucketDef {
        public_access_block: [
            pab.block_public_acls() == Some(true),
            pab.ignore_public_acls() == Some(true),
            pab.block_public_policy() == Some(true),
            pab.restrict_public_buckets() == Some(true),
        ],
        encryption,
        lifecycle,
        versioning_enabled,
    }
}

#[allow(deprecated)] // `LifecycleRule::prefix`: the pre-filter way to scope a rule.
fn rule_def(r: &aws_sdk_s3::types::LifecycleRule) -> RuleDef {
    let prefix = match r.filter() {
        Some(f)
            if f.tag().is_some()
                || f.and().is_some()
                || f.object_size_greater_than().is_some()
                || f.object_size_less_than().is_some() =>
        {
            None
        }
        Some(f) => Some(f.prefix().unwrap_or("").to_string()),
        None => Some(r.prefix().unwrap_or("").to_string()),
    };
    RuleDef {
        id: r.id().unwrap_or("").to_string(),
        enabled: r.status().as_str() == "Enabled",
        prefix,
        abort_incomplete_upload_days: r
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        moves_or_deletes_objects: r.expiration().is_some()
            || !r.transitions().is_empty()
            || r.noncurrent_version_expiration().is_some()
            || !r.noncurrent_version_transitions().is_empty(),
    }
}

// ---------------------------------------------------------------- emulator test

#[track_caller]
fn moto_endpoint() -> String {
    match std::env::var("FLOE_TEST_MOTO_ENDPOINT") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "FLOE_TEST_MOTO_ENDPOINT is not set: this test needs the moto server; run \
             scripts/test-all.sh, or `eval \"$(localstack/emulators.sh start moto)\"`"
        ),
    }
}

fn creds() -> Credentials {
    Credentials::new("test", "test", None, None, "floe-tests")
}

fn s3_client(endpoint: &str) -> S3Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds())
        .force_path_style(true)
        .build();
    S3Client::from_conf(conf)
}

fn ddb_client(endpoint: &str) -> DdbClient {
    let conf = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds())
        .build();
    DdbClient::from_conf(conf)
}

/// Runs the real `floe init --backend aws` against `endpoint`.
fn floe_init(endpoint: &str, bucket: &str, table: &str) {
    let mut cmd = Command::new(common::floe_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["init", "--backend", "aws", "--region", "us-east-1"])
        .args([
            "--bucket",
            bucket,
            "--table",
            table,
            "--endpoint-url",
            endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run floe init");
    assert!(
        out.status.success(),
        "floe init failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-all.sh starts it (FLOE_TEST_MOTO_ENDPOINT)"]
async fn floe_init_creates_what_the_template_declares() {
    let endpoint = moto_endpoint();
    let template = read_json(TEMPLATE);
    check_inventory(&template);
    let name = format!("floe-infra-{}", uuid::Uuid::new_v4().simple());
    // Twice: `floe init` is re-runnable and the second run changes nothing.
    floe_init(&endpoint, &name, &name);
    floe_init(&endpoint, &name, &name);

    let ddb = ddb_client(&endpoint);
    let table = described_table(&ddb, &name).await;
    assert_eq!(
        table,
        template_table(&template),
        "the table floe init created (left) differs from {TEMPLATE} (right)"
    );
    assert_eq!(
        table,
        table_json_def(&read_json(TABLE_JSON)),
        "the table floe init created (left) differs from {TABLE_JSON} (right)"
    );

    let s3 = s3_client(&endpoint);
    let bucket = described_bucket(&s3, &name).await;
    assert_eq!(
        bucket,
        template_bucket(&template),
        "the bucket floe init created (left) differs from {TEMPLATE} (right)"
    );

    // A lifecycle rule someone added survives another `floe init`, which keeps
    // its own rule exactly once.
    let mut rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&name)
        .send()
        .await
        .expect("GetBucketLifecycleConfiguration")
        .rules()
        .to_vec();
    rules.push(
        aws_sdk_s3::types::LifecycleRule::builder()
            .id("someone-elses-rule")
            .status(aws_sdk_s3::types::ExpirationStatus::Enabled)
            .filter(
                aws_sdk_s3::types::LifecycleRuleFilter::builder()
                    .prefix("scratch/")
                    .build(),
            )
            .expiration(
                aws_sdk_s3::types::LifecycleExpiration::builder()
                    .days(7)
                    .build(),
            )
            .build()
            .expect("rule"),
    );
    s3.put_bucket_lifecycle_configuration()
        .bucket(&name)
        .lifecycle_configuration(
            aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .expect("configuration"),
        )
        .send()
        .await
        .expect("PutBucketLifecycleConfiguration");
    floe_init(&endpoint, &name, &name);
    let after = described_bucket(&s3, &name).await;
    let ids: Vec<_> = after.lifecycle.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "floe-abort-incomplete-multipart-uploads",
            "someone-elses-rule"
        ],
        "floe init keeps existing lifecycle rules and adds its own once"
    );

    s3.delete_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("DeleteBucket");
    ddb.delete_table()
        .table_name(&name)
        .send()
        .await
        .expect("DeleteTable");
}

#[test]
fn table_json_and_code_agree_with_the_template() {
    let template = read_json(TEMPLATE);
    check_inventory(&template);
    let from_template = template_table(&template);
    assert_eq!(
        table_json_def(&read_json(TABLE_JSON)),
        from_template,
        "{TABLE_JSON} (left) differs from {TEMPLATE} (right)"
    );
    assert_eq!(
        from_template.ttl,
        Some((floe_core::meta::dynamodb::TTL_ATTRIBUTE.to_string(), true)),
        "the template's TTL attribute is the one the code writes"
    );
    // The documented production choices are really there.
    let (_, table) = resource(&template, "AWS::DynamoDB::Table");
    let props = &table["Properties"];
    assert!(props.get("PointInTimeRecoverySpecification").is_some());
    assert!(props.get("DeletionProtectionEnabled").is_some());
    for (id, r) in resources(&template) {
        if ["AWS::S3::Bucket", "AWS::DynamoDB::Table"].contains(&r["Type"].as_str().unwrap_or("")) {
            assert_eq!(
                (
                    r["DeletionPolicy"].as_str(),
                    r["UpdateReplacePolicy"].as_str()
                ),
                (Some("Retain"), Some("Retain")),
                "{id} holds the data: deleting or replacing the stack must keep it"
            );
        }
    }
}

// ---------------------------------------------------------------- IAM policy

/// Every AWS SDK operation Floe's code may call, with the IAM actions it needs.
/// THE list to keep current: when the code calls an operation that is not here,
/// `gateway_policy_grants_exactly_what_the_code_calls` fails and names it; add
/// it with the actions from the AWS "Service Authorization Reference" (S3 and
/// DynamoDB "Actions defined by ..." tables), then grant them in the template
/// if the gateway runs that call.
const SDK_CALLS: &[(&str, &[&str])] = &[
    // S3 objects. HeadObject is authorized as GetObject.
    ("put_object", &["s3:PutObject"]),
    ("get_object", &["s3:GetObject"]),
    ("head_object", &["s3:GetObject"]),
    ("delete_object", &["s3:DeleteObject"]),
    ("delete_objects", &["s3:DeleteObject"]),
    ("copy_object", &["s3:GetObject", "s3:PutObject"]),
    ("create_multipart_upload", &["s3:PutObject"]),
    ("upload_part", &["s3:PutObject"]),
    ("complete_multipart_upload", &["s3:PutObject"]),
    ("abort_multipart_upload", &["s3:AbortMultipartUpload"]),
    // S3 bucket level. ListObjects(V2) and HeadBucket are authorized as ListBucket.
    ("list_objects_v2", &["s3:ListBucket"]),
    ("list_objects", &["s3:ListBucket"]),
    ("head_bucket", &["s3:ListBucket"]),
    ("create_bucket", &["s3:CreateBucket"]),
    ("delete_bucket", &["s3:DeleteBucket"]),
    (
        "put_public_access_block",
        &["s3:PutBucketPublicAccessBlock"],
    ),
    (
        "get_public_access_block",
        &["s3:GetBucketPublicAccessBlock"],
    ),
    ("put_bucket_encryption", &["s3:PutEncryptionConfiguration"]),
    ("get_bucket_encryption", &["s3:GetEncryptionConfiguration"]),
    (
        "put_bucket_lifecycle_configuration",
        &["s3:PutLifecycleConfiguration"],
    ),
    (
        "get_bucket_lifecycle_configuration",
        &["s3:GetLifecycleConfiguration"],
    ),
    // DynamoDB items.
    ("get_item", &["dynamodb:GetItem"]),
    ("put_item", &["dynamodb:PutItem"]),
    ("update_item", &["dynamodb:UpdateItem"]),
    ("delete_item", &["dynamodb:DeleteItem"]),
    ("query", &["dynamodb:Query"]),
    ("scan", &["dynamodb:Scan"]),
    ("batch_write_item", &["dynamodb:BatchWriteItem"]),
    ("batch_get_item", &["dynamodb:BatchGetItem"]),
    // Transactions have no IAM action of their own: each item is authorized by
    // its kind (TRANSACT_ITEMS below).
    ("transact_write_items", &[]),
    ("transact_get_items", &[]),
    // DynamoDB tables.
    ("create_table", &["dynamodb:CreateTable"]),
    ("delete_table", &["dynamodb:DeleteTable"]),
    ("describe_table", &["dynamodb:DescribeTable"]),
    ("update_time_to_live", &["dynamodb:UpdateTimeToLive"]),
    ("describe_time_to_live", &["dynamodb:DescribeTimeToLive"]),
];

/// Items of TransactWriteItems / TransactGetItems, by their SDK builder.
const TRANSACT_ITEMS: &[(&str, &str)] = &[
    ("ConditionCheck::builder", "dynamodb:ConditionCheckItem"),
    ("Put::builder", "dynamodb:PutItem"),
    ("Update::builder", "dynamodb:UpdateItem"),
    ("Delete::builder", "dynamodb:DeleteItem"),
    ("Get::builder", "dynamodb:GetItem"),
];

/// Methods on an SDK client that send no request.
const CLIENT_ACCESSORS: &[&str] = &["config", "clone"];

/// Functions only `floe init` runs: the gateway needs none of their permissions.
const INIT_ONLY_FNS: &[&str] = &["create_bucket", "create_table"];

/// The workspace crates linked into `floe`: floe-gateway and, transitively, its
/// workspace path dependencies. Returns their directories.
fn linked_crates() -> Vec<PathBuf> {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    // `floe-core = { path = "core" }` lines of [workspace.dependencies].
    let paths: BTreeMap<String, String> = manifest
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once('=')?;
            let dir = rest.split_once("path = \"")?.1.split_once('"')?.0;
            Some((name.trim().to_string(), dir.to_string()))
        })
        .collect();
    let mut todo = vec!["gateway".to_string()];
    let mut seen = BTreeSet::new();
    while let Some(dir) = todo.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        let m = std::fs::read_to_string(root.join(&dir).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{dir}/Cargo.toml: {e}"));
        let mut in_deps = false;
        for line in m.lines().map(str::trim) {
            if line.starts_with('[') {
                in_deps = line == "[dependencies]";
            } else if in_deps {
                let name = line.split(['.', '=', ' ']).next().unwrap_or("");
                if let Some(d) = paths.get(name) {
                    todo.push(d.clone());
                }
            }
        }
    }
    seen.into_iter().map(|d| root.join(d)).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let path = e.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Source without `//` comments and without whitespace, so a call chain split
/// over lines (`self\n.client\n.get_item()`) reads `self.client.get_item()`.
fn squeeze(src: &str) -> String {
    src.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Byte ranges of the bodies of the functions named in `names`.
fn fn_bodies(code: &str, names: &[&str]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    for name in names {
        let sig = format!("fn{name}(");
        for (at, _) in code.match_indices(&sig) {
            let Some(open) = code[at..].find('{').map(|i| at + i) else {
                continue;
            };
            let mut depth = 0usize;
            for (i, c) in code[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            out.push(open..open + i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// SDK calls in `src`: (call, in an init-only function). A call is `.op()` with
/// `op` in `SDK_CALLS`, a transaction item builder, or any method called on
/// something named `…client` (which must then be known).
fn sdk_calls(src: &str) -> std::result::Result<Vec<(String, bool)>, String> {
    let code = squeeze(src);
    let init = fn_bodies(&code, INIT_ONLY_FNS);
    let in_init = |at: usize| init.iter().any(|r| r.contains(&at));
    let mut calls = Vec::new();
    // `.ident(`, recording whether the receiver's last segment ends in `client`.
    for (dot, _) in code.match_indices('.') {
        let rest = &code[dot + 1..];
        let len = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
        let ident = &rest[..len];
        if ident.is_empty() || !rest[len..].starts_with('(') {
            continue;
        }
        let on_client = code[..dot].ends_with("client");
        let known = SDK_CALLS.iter().any(|(op, _)| *op == ident);
        let empty_args = rest[len..].starts_with("()");
        if known && empty_args {
            calls.push((ident.to_string(), in_init(dot)));
        } else if on_client && !CLIENT_ACCESSORS.contains(&ident) {
            return Err(format!(
                "`client.{ident}(` is not in SDK_CALLS (nor CLIENT_ACCESSORS): add it with \
                 the IAM actions it needs"
            ));
        }
    }
    for (builder, _) in TRANSACT_ITEMS {
        for (at, _) in code.match_indices(builder) {
            let boundary = code[..at].chars().next_back().is_none_or(|c| !is_ident(c));
            if boundary {
                calls.push((builder.to_string(), in_init(at)));
            }
        }
    }
    Ok(calls)
}

fn actions_of(call: &str) -> Vec<&'static str> {
    SDK_CALLS
        .iter()
        .find(|(op, _)| *op == call)
        .map(|(_, a)| a.to_vec())
        .or_else(|| {
            TRANSACT_ITEMS
                .iter()
                .find(|(b, _)| *b == call)
                .map(|(_, a)| vec![*a])
        })
        .unwrap_or_else(|| panic!("no IAM action for {call}"))
}

/// The IAM actions the gateway's code needs (`.0`) and those only `floe init`
/// needs (`.1`), derived from the source of every crate linked into `floe`.
fn derived_actions() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut files = Vec::new();
    for dir in linked_crates() {
        rust_files(&dir.join("src"), &mut files);
    }
    let (mut runtime, mut init) = (BTreeSet::new(), BTreeSet::new());
    let mut sdk_files = 0;
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read source");
        // Only files that use the SDK can call it.
        if !src.contains("aws_sdk_") {
            continue;
        }
        sdk_files += 1;
        let calls = sdk_calls(&src).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (call, init_only) in calls {
            let target = if init_only { &mut init } else { &mut runtime };
            target.extend(actions_of(&call).into_iter().map(String::from));
        }
    }
    assert!(sdk_files > 0, "no source file uses the AWS SDK: {files:?}");
    (runtime, init)
}

/// The template's managed policy: action → resource it is granted on.
fn granted(template: &Value) -> BTreeMap<String, Value> {
    let (id, policy) = resource(template, "AWS::IAM::ManagedPolicy");
    let doc = &policy["Properties"]["PolicyDocument"];
    assert_eq!(doc["Version"], "2012-10-17", "{id} policy language version");
    let mut out = BTreeMap::new();
    for st in doc["Statement"].as_array().expect("Statement list") {
        let st_obj = st.as_object().expect("statement");
        only_keys(st_obj, &["Sid", "Effect", "Action", "Resource"], id);
        assert_eq!(st["Effect"], "Allow", "{id}: only Allow statements");
        let actions: Vec<&str> = match &st["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().map(|v| v.as_str().expect("action")).collect(),
            other => panic!("{id}: Action {other}"),
        };
        for a in actions {
            assert!(!a.contains('*'), "{id}: wildcard action {a}");
            let prev = out.insert(a.to_string(), st["Resource"].clone());
            assert!(prev.is_none(), "{id}: {a} granted twice");
        }
    }
    out
}

/// The resource an action must be granted on: the table, the bucket, or the
/// bucket's objects.
fn expected_resource(action: &str) -> Value {
    if action.starts_with("dynamodb:") {
        json!({ "Fn::GetAtt": ["Table", "Arn"] })
    } else if action == "s3:ListBucket" {
        json!({ "Fn::GetAtt": ["Bucket", "Arn"] })
    } else {
        json!({ "Fn::Sub": "${Bucket.Arn}/*" })
    }
}

#[test]
fn gateway_policy_grants_exactly_what_the_code_calls() {
    let (runtime, init_only) = derived_actions();
    let template = read_json(TEMPLATE);
    let granted = granted(&template);
    let granted_set: BTreeSet<String> = granted.keys().cloned().collect();
    let missing: Vec<_> = runtime.difference(&granted_set).collect();
    let extra: Vec<_> = granted_set.difference(&runtime).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{TEMPLATE}: the gateway policy lacks {missing:?} (the code calls them) and grants \
         {extra:?} (no code outside `floe init` needs them; init-only: {init_only:?})"
    );
    for (action, res) in &granted {
        assert_eq!(
            res,
            &expected_resource(action),
            "{action} is granted on the wrong resource"
        );
    }
}

#[test]
fn the_call_scanner_sees_chains_builders_and_init_functions() {
    let src = r#"
        use aws_sdk_dynamodb::types::{ConditionCheck, Put};
        async fn commit(&self) {
            let out = self
                .client // a comment with client.put_object() in it
                .transact_write_items()
                .send();
            let c = ConditionCheck::builder().build();
            let p = Put::builder().build();
            let q = PutRequest::builder();
        }
        pub async fn create_table(client: &Client) {
            let f = format!("{x}");
            client.create_table().send();
            client.describe_table().send();
        }
        fn read(&self) { self.client.get_item(); }
    "#;
    let mut calls = sdk_calls(src).expect("known calls");
    calls.sort();
    let expect = [
        ("ConditionCheck::builder", false),
        ("Put::builder", false),
        ("create_table", true),
        ("describe_table", true),
        ("get_item", false),
        ("transact_write_items", false),
    ];
    assert_eq!(
        calls,
        expect.map(|(c, i)| (c.to_string(), i)),
        "calls found in the sample"
    );
    let err = sdk_calls("fn f(){ self.client.restore_table_from_backup().send(); }")
        .expect_err("an unknown client call is reported");
    assert!(err.contains("restore_table_from_backup"), "{err}");
}
