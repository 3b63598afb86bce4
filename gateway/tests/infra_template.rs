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
//! - `compactor_function_runs_what_the_code_reads`: the compactor's Lambda
//!   function, role, schedule and permission against the settings the
//!   function reads (`SETTINGS`) and the rules the compactor relies on
//!   (passes more often than half the object delete delay), without an
//!   emulator.
//! - `template_deploys_the_compactor_on_moto` (moto): creates the stack with
//!   the compactor through moto's CloudFormation and reads the function, its
//!   schedule and its permission back.
//!
//! Every property of the template's bucket and table is either compared here or
//! listed in `PRODUCTION_ONLY_PROPERTIES` with its reason; a property in neither
//! fails the test, so the template cannot drift from `floe init` unnoticed.
//!
//! The moto tests are ignored by default; `scripts/test-all.sh` runs them with
//! `--run-ignored all` and `FLOE_TEST_MOTO_ENDPOINT` set. Run that way without
//! the variable, they fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::Client as DdbClient;
use aws_sdk_s3::Client as S3Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use floe_core::settings::{SETTINGS, Settings};
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
const PRODUCTION_ONLY_RESOURCES: &[(&str, &str)] = &[
    (
        "AWS::S3::BucketPolicy",
        "denies plain-HTTP requests; emulators are reached over http",
    ),
    // The compactor as a scheduled Lambda function: deploy-only (development
    // runs passes in the gateway or with `floe compact`), checked against the
    // code by `compactor_function_runs_what_the_code_reads`.
    (
        "AWS::Lambda::Function",
        "deploy-only: floe init does not create the compactor function",
    ),
    (
        "AWS::IAM::Role",
        "deploy-only: the compactor function's role",
    ),
    (
        "AWS::Logs::LogGroup",
        "deploy-only: the compactor function's logs",
    ),
    (
        "AWS::Lambda::EventInvokeConfig",
        "deploy-only: no retry of a failed scheduled pass",
    ),
    ("AWS::Events::Rule", "deploy-only: the compactor's schedule"),
    (
        "AWS::Lambda::Permission",
        "deploy-only: lets the schedule invoke the compactor",
    ),
];

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

// ---------------------------------------------------------------- compactor function

/// The parameter that turns the compactor on: its package's bucket.
const COMPACTOR_SWITCH: &str = "CompactorCodeBucket";

/// The compactor's resource types; the template holds one of each, all under
/// the condition the switch sets.
const COMPACTOR_TYPES: &[&str] = &[
    "AWS::Lambda::Function",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Events::Rule",
    "AWS::Lambda::Permission",
];

fn parameter<'a>(template: &'a Value, name: &str) -> &'a Value {
    let p = &template["Parameters"][name];
    assert!(p.is_object(), "{TEMPLATE} has no parameter {name}");
    p
}

/// `MinValue`, `MaxValue` or `Default` of a Number parameter.
#[track_caller]
fn parameter_number(template: &Value, name: &str, field: &str) -> u64 {
    let p = parameter(template, name);
    assert_eq!(p["Type"], "Number", "parameter {name} is a Number");
    let v = &p[field];
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("parameter {name} has no numeric {field}: {v}"))
}

/// The parameter `{"Ref": name}` names.
#[track_caller]
fn ref_parameter<'a>(template: &Value, v: &'a Value, what: &str) -> &'a str {
    let name = v["Ref"]
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a Ref to a parameter: {v}"));
    parameter(template, name);
    name
}

/// A parameter's default as text; `None` for a resource, a pseudo parameter or
/// a parameter without a default.
fn default_of(template: &Value, name: &str) -> Option<String> {
    match &template["Parameters"].get(name)?["Default"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `v` as the stack would see it with every parameter at its default: a
/// string, a `Ref` to a parameter or an `Fn::Sub` of parameters; `None` when
/// it needs the stack (a resource, a pseudo parameter).
fn at_defaults(template: &Value, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => return Some(s.clone()),
        Value::Number(n) => return Some(n.to_string()),
        _ => {}
    }
    if let Some(name) = v["Ref"].as_str() {
        return default_of(template, name);
    }
    let mut rest = v["Fn::Sub"].as_str()?;
    let mut out = String::new();
    while let Some(open) = rest.find("${") {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}')?;
        out.push_str(&default_of(template, &rest[open + 2..close])?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn get_att(id: &str) -> Value {
    json!({ "Fn::GetAtt": [id, "Arn"] })
}

/// The statements of a policy document, each checked to be an Allow.
fn statements<'a>(doc: &'a Value, what: &str) -> &'a Vec<Value> {
    assert_eq!(
        doc["Version"], "2012-10-17",
        "{what}: policy language version"
    );
    let list = doc["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: Statement is not a list"));
    for st in list {
        assert_eq!(st["Effect"], "Allow", "{what}: only Allow statements");
    }
    list
}

fn string_list(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn compactor_function_runs_what_the_code_reads() {
    let template = read_json(TEMPLATE);
    check_inventory(&template);
    let defaults = Settings::default();
    let (bucket_id, _) = resource(&template, "AWS::S3::Bucket");
    let (table_id, _) = resource(&template, "AWS::DynamoDB::Table");
    let (policy_id, _) = resource(&template, "AWS::IAM::ManagedPolicy");
    let (fn_id, function) = resource(&template, "AWS::Lambda::Function");
    let (role_id, role) = resource(&template, "AWS::IAM::Role");
    let (log_id, log_group) = resource(&template, "AWS::Logs::LogGroup");
    let (invoke_id, invoke) = resource(&template, "AWS::Lambda::EventInvokeConfig");
    let (rule_id, rule) = resource(&template, "AWS::Events::Rule");
    let (perm_id, permission) = resource(&template, "AWS::Lambda::Permission");

    // Storage only by default: every compactor resource, and every output
    // naming one, exists only once the package's bucket is given.
    assert_eq!(
        parameter(&template, COMPACTOR_SWITCH)["Default"],
        "",
        "{COMPACTOR_SWITCH} is empty by default: the stack deploys storage only"
    );
    let condition = function["Condition"]
        .as_str()
        .unwrap_or_else(|| panic!("{fn_id} has no Condition"));
    assert_eq!(
        template["Conditions"][condition],
        json!({ "Fn::Not": [{ "Fn::Equals": [{ "Ref": COMPACTOR_SWITCH }, ""] }] }),
        "condition {condition} holds exactly when {COMPACTOR_SWITCH} is given"
    );
    for ty in COMPACTOR_TYPES {
        let (id, r) = resource(&template, ty);
        assert_eq!(
            r["Condition"], condition,
            "{id} ({ty}) exists only with the compactor"
        );
    }
    let compactor_ids: Vec<&str> = COMPACTOR_TYPES
        .iter()
        .map(|ty| resource(&template, ty).0)
        .collect();
    let outputs = template["Outputs"].as_object().expect("Outputs");
    for (name, out) in outputs {
        let value = out["Value"].to_string();
        if compactor_ids
            .iter()
            .any(|id| value.contains(&format!("\"{id}\"")))
        {
            assert_eq!(
                out["Condition"], condition,
                "output {name} names a compactor resource"
            );
        }
    }
    assert_eq!(
        outputs.get("CompactorFunctionName").map(|o| &o["Value"]),
        Some(&json!({ "Ref": fn_id })),
        "the CompactorFunctionName output"
    );

    // The function: the `bootstrap` binary cargo lambda packages, on the
    // custom runtime.
    properties(function, fn_id);
    let props = &function["Properties"];
    assert_eq!(props["Runtime"], "provided.al2023", "{fn_id}: Runtime");
    assert_eq!(props["Handler"], "bootstrap", "{fn_id}: Handler");
    let arch = ref_parameter(
        &template,
        &props["Architectures"][0],
        &format!("{fn_id} Architectures"),
    );
    let mut archs = string_list(&parameter(&template, arch)["AllowedValues"]);
    archs.sort_unstable();
    assert_eq!(
        archs,
        ["arm64", "x86_64"],
        "{arch}: the architectures cargo lambda builds for"
    );

    // Its environment: settings only (lambda.rs reads `SETTINGS`, each by
    // `env()`; any other name would be ignored), each valid at the
    // parameters' defaults, and the whole valid as lambda.rs checks it.
    let vars = props["Environment"]["Variables"]
        .as_object()
        .unwrap_or_else(|| panic!("{fn_id} has no Environment.Variables"));
    let mut settings = Settings::default();
    for (var, value) in vars {
        let def = SETTINGS.iter().find(|d| d.env() == *var).unwrap_or_else(|| {
            panic!("{fn_id}: {var} is not the variable of any setting in floe_core::settings::SETTINGS")
        });
        if let Some(text) = at_defaults(&template, value) {
            settings
                .apply(def.name, &text)
                .unwrap_or_else(|e| panic!("{fn_id}: {var} = {text:?}: {e}"));
        }
    }
    assert_eq!(
        vars.get("FLOE_BACKEND"),
        Some(&json!("aws")),
        "{fn_id}: FLOE_BACKEND"
    );
    assert_eq!(
        vars.get("FLOE_BUCKET"),
        Some(&json!({ "Ref": bucket_id })),
        "{fn_id}: FLOE_BUCKET is the template's bucket"
    );
    assert_eq!(
        vars.get("FLOE_TABLE"),
        Some(&json!({ "Ref": table_id })),
        "{fn_id}: FLOE_TABLE is the template's table"
    );
    assert_eq!(
        vars.get("FLOE_REGION"),
        Some(&json!({ "Ref": "AWS::Region" })),
        "{fn_id}: FLOE_REGION is the stack's region"
    );
    settings.bucket = Some(bucket_id.to_string());
    settings.table = Some(table_id.to_string());
    settings
        .validate()
        .unwrap_or_else(|e| panic!("{fn_id}: its settings at the parameters' defaults: {e}"));

    // The object delete delay: the setting's default unless changed, the same
    // for the gateways (GatewayArguments), and longer than twice the longest
    // schedule whatever its value.
    let delay = vars
        .get("FLOE_OBJECT_DELETE_DELAY")
        .unwrap_or_else(|| panic!("{fn_id} sets no FLOE_OBJECT_DELETE_DELAY"));
    let delay_param = delay["Fn::Sub"]
        .as_str()
        .and_then(|s| s.strip_prefix("${")?.strip_suffix("}m"))
        .unwrap_or_else(|| {
            panic!("{fn_id}: FLOE_OBJECT_DELETE_DELAY is not ${{<minutes>}}m: {delay}")
        });
    assert_eq!(
        settings.object_delete_delay, defaults.object_delete_delay,
        "{delay_param} defaults to the setting's default, the gateways' unless they are told otherwise"
    );
    let gateway_args = template["Outputs"]["GatewayArguments"]["Value"]["Fn::Sub"]
        .as_str()
        .unwrap_or("");
    assert!(
        gateway_args.contains(&format!("--object-delete-delay ${{{delay_param}}}m")),
        "GatewayArguments gives the gateways the compactor's delay: {gateway_args}"
    );
    let min_delay = Duration::from_secs(60 * parameter_number(&template, delay_param, "MinValue"));

    // The schedule: `rate(1 minute)` (EventBridge wants the singular) or
    // `rate(N minutes)`; passes forget sightings older than half the delay
    // (compactor/src/gc.rs), so the longest allowed period must be shorter.
    properties(rule, rule_id);
    let rp = &rule["Properties"];
    let sched = &rp["ScheduleExpression"]["Fn::If"];
    let sched_param = sched[2]["Fn::Sub"]
        .as_str()
        .and_then(|s| s.strip_prefix("rate(${")?.strip_suffix("} minutes)"))
        .unwrap_or_else(|| {
            panic!("{rule_id}: ScheduleExpression is not rate(${{<minutes>}} minutes) {sched}")
        });
    assert_eq!(sched[1], "rate(1 minute)", "{rule_id}: one minute");
    assert_eq!(
        template["Conditions"][sched[0].as_str().unwrap_or("")],
        json!({ "Fn::Equals": [{ "Ref": sched_param }, "1"] }),
        "{rule_id}: the singular exactly when {sched_param} is 1"
    );
    assert!(parameter_number(&template, sched_param, "MinValue") >= 1);
    let longest = Duration::from_secs(60 * parameter_number(&template, sched_param, "MaxValue"));
    assert!(
        2 * longest < defaults.object_delete_delay,
        "{sched_param} allows a pass every {longest:?}, not more often than half the default \
         object delete delay ({:?}): nothing would ever be deleted",
        defaults.object_delete_delay
    );
    assert!(
        2 * longest < min_delay,
        "{sched_param} allows a pass every {longest:?}, not more often than half the shortest \
         delay {delay_param} allows ({min_delay:?})"
    );
    assert_eq!(rp["State"], "ENABLED", "{rule_id}: State");
    assert_eq!(
        rp["Targets"]
            .as_array()
            .map(|t| t.iter().map(|t| &t["Arn"]).collect::<Vec<_>>()),
        Some(vec![&get_att(fn_id)]),
        "{rule_id} targets the function, only"
    );

    // The schedule may invoke the function, nothing else may.
    properties(permission, perm_id);
    let pp = &permission["Properties"];
    assert_eq!(pp["Action"], "lambda:InvokeFunction", "{perm_id}: Action");
    assert_eq!(
        pp["FunctionName"],
        json!({ "Ref": fn_id }),
        "{perm_id}: FunctionName"
    );
    assert_eq!(
        pp["Principal"], "events.amazonaws.com",
        "{perm_id}: Principal"
    );
    assert_eq!(
        pp["SourceArn"],
        get_att(rule_id),
        "{perm_id}: SourceArn is the schedule"
    );

    // A failed or late pass is not retried: the next scheduled one resumes
    // (every step is idempotent), and an event older than the shortest
    // period is dropped before the next one is due.
    properties(invoke, invoke_id);
    let ip = &invoke["Properties"];
    assert_eq!(
        ip["FunctionName"],
        json!({ "Ref": fn_id }),
        "{invoke_id}: FunctionName"
    );
    assert_eq!(ip["Qualifier"], "$LATEST", "{invoke_id}: Qualifier");
    assert_eq!(ip["MaximumRetryAttempts"], 0, "{invoke_id}: no retries");
    let max_age = ip["MaximumEventAgeInSeconds"].as_u64().unwrap_or(u64::MAX);
    assert!(
        max_age <= 60 * parameter_number(&template, sched_param, "MinValue"),
        "{invoke_id}: MaximumEventAgeInSeconds {max_age} outlasts the shortest schedule"
    );

    // Lambda's limits: 15 minutes, 128 MB to 10 GB.
    let timeout = ref_parameter(&template, &props["Timeout"], &format!("{fn_id} Timeout"));
    assert!(
        parameter_number(&template, timeout, "MaxValue") <= 900,
        "{timeout}: Lambda stops a function after 900 s at most"
    );
    assert!(
        parameter_number(&template, timeout, "Default")
            <= parameter_number(&template, timeout, "MaxValue")
    );
    let memory = ref_parameter(
        &template,
        &props["MemorySize"],
        &format!("{fn_id} MemorySize"),
    );
    assert!(
        parameter_number(&template, memory, "MinValue") >= 128,
        "{memory}: MinValue"
    );
    assert!(
        parameter_number(&template, memory, "MaxValue") <= 10240,
        "{memory}: MaxValue"
    );

    // The role: assumed by Lambda only; the gateway policy (whose actions
    // `gateway_policy_grants_exactly_what_the_code_calls` derives from the
    // code, the compactor's included) and writing its own log group, nothing
    // else (not AWSLambdaBasicExecutionRole, which writes any log group).
    assert_eq!(props["Role"], get_att(role_id), "{fn_id} runs as {role_id}");
    properties(role, role_id);
    let rp = &role["Properties"];
    let trust = statements(&rp["AssumeRolePolicyDocument"], role_id);
    assert_eq!(trust.len(), 1, "{role_id}: one trust statement");
    assert_eq!(
        (&trust[0]["Principal"], &trust[0]["Action"]),
        (
            &json!({ "Service": "lambda.amazonaws.com" }),
            &json!("sts:AssumeRole")
        ),
        "{role_id} is assumed by Lambda only"
    );
    assert_eq!(
        rp["ManagedPolicyArns"],
        json!([{ "Ref": policy_id }]),
        "{role_id}: the gateway policy is its only managed policy"
    );
    properties(log_group, log_id);
    let lp = &log_group["Properties"];
    let fn_name = props["FunctionName"]["Fn::Sub"]
        .as_str()
        .unwrap_or_else(|| panic!("{fn_id}: FunctionName is not an Fn::Sub"));
    assert_eq!(
        lp["LogGroupName"],
        json!({ "Fn::Sub": format!("/aws/lambda/{fn_name}") }),
        "{log_id} is the group Lambda writes {fn_id}'s logs to"
    );
    assert!(
        lp["RetentionInDays"].as_u64().is_some(),
        "{log_id}: logs expire"
    );
    let inline = rp["Policies"].as_array().cloned().unwrap_or_default();
    let mut log_actions = Vec::new();
    for p in &inline {
        for st in statements(&p["PolicyDocument"], role_id) {
            assert_eq!(
                st["Resource"],
                get_att(log_id),
                "{role_id}: only on its own log group"
            );
            log_actions.extend(string_list(&st["Action"]).into_iter().map(String::from));
        }
    }
    log_actions.sort();
    assert_eq!(
        log_actions,
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        "{role_id}: inline policies grant writing logs, nothing more"
    );
}

// ---------------------------------------------------------------- the template on moto

/// One request to moto for an API the workspace has no SDK crate for
/// (CloudFormation, Lambda, EventBridge): moto routes it by the service in
/// the Authorization header's scope and checks no signature. Returns the
/// status and the body.
async fn moto_request(
    endpoint: &str,
    service: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("FLOE_TEST_MOTO_ENDPOINT {endpoint} is not http://host:port"))
        .trim_end_matches('/');
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Length: {}\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential=test/20250101/us-east-1/{service}/aws4_request, SignedHeaders=host, \
         Signature=0\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .unwrap_or_else(|e| panic!("connect to moto at {host}: {e}"));
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send to moto");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .expect("read moto's answer");
    let text = String::from_utf8(raw).expect("moto answers in UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "moto answered {service} {path} in chunks, which this helper does not decode"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    (status, body.to_string())
}

/// `application/x-www-form-urlencoded` text, every byte but the unreserved
/// ones escaped.
fn form(pairs: &[(&str, &str)]) -> String {
    let escape = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A CloudFormation Query API call; returns the XML answer.
async fn cloudformation(endpoint: &str, action: &str, params: &[(&str, &str)]) -> String {
    let mut pairs = vec![("Action", action), ("Version", "2010-05-15")];
    pairs.extend_from_slice(params);
    let (status, body) = moto_request(
        endpoint,
        "cloudformation",
        "POST",
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form(&pairs),
    )
    .await;
    assert_eq!(status, 200, "CloudFormation {action}: {body}");
    body
}

/// The text of the first `<tag>` after `after` in `xml`.
#[track_caller]
fn xml_text<'a>(xml: &'a str, after: &str, tag: &str) -> &'a str {
    let from = xml
        .find(after)
        .unwrap_or_else(|| panic!("no {after} in {xml}"));
    let open = format!("<{tag}>");
    let start = xml[from..]
        .find(&open)
        .map(|i| from + i + open.len())
        .unwrap_or_else(|| panic!("no <{tag}> after {after} in {xml}"));
    let len = xml[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("<{tag}> is not closed in {xml}"));
    &xml[start..start + len]
}

/// A Lambda REST call; returns the JSON answer.
async fn lambda_get(endpoint: &str, path: &str) -> Value {
    let (status, body) = moto_request(endpoint, "lambda", "GET", path, &[], "").await;
    assert_eq!(status, 200, "Lambda GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("Lambda GET {path}: {e}: {body}"))
}

/// An EventBridge call; returns the JSON answer.
async fn events(endpoint: &str, operation: &str, request: Value) -> Value {
    let target = format!("AWSEvents.{operation}");
    let (status, body) = moto_request(
        endpoint,
        "events",
        "POST",
        "/",
        &[
            ("X-Amz-Target", &target),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        &request.to_string(),
    )
    .await;
    assert_eq!(status, 200, "EventBridge {operation}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("EventBridge {operation}: {e}: {body}"))
}

/// The physical id (a name) of a stack's resource. From ListStackResources:
/// moto's DescribeStackResource fails on a stack holding resource types it
/// skipped (`AWS::Lambda::EventInvokeConfig`).
async fn physical_id(endpoint: &str, stack: &str, logical_id: &str) -> String {
    let xml = cloudformation(endpoint, "ListStackResources", &[("StackName", stack)]).await;
    let wanted = format!("<LogicalResourceId>{logical_id}</LogicalResourceId>");
    let member = xml
        .split("</member>")
        .find(|m| m.contains(&wanted))
        .unwrap_or_else(|| panic!("stack {stack} has no resource {logical_id}: {xml}"));
    let member = member.rsplit("<member>").next().unwrap_or(member);
    xml_text(member, "", "PhysicalResourceId").to_string()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test-all.sh starts it (FLOE_TEST_MOTO_ENDPOINT)"]
async fn template_deploys_the_compactor_on_moto() {
    let endpoint = moto_endpoint();
    let template = read_json(TEMPLATE);
    let name = &format!("floe-cfn-{}", uuid::Uuid::new_v4().simple());
    let table = &format!("{name}-table");
    let code_bucket = &format!("{name}-code");
    let code_key = default_of(&template, "CompactorCodeKey").expect("a default code key");

    // The package: moto stores it without running it, so an empty zip
    // archive (its end-of-central-directory record alone) will do.
    let s3 = s3_client(&endpoint);
    s3.create_bucket()
        .bucket(code_bucket)
        .send()
        .await
        .expect("CreateBucket (code)");
    let mut empty_zip = b"PK\x05\x06".to_vec();
    empty_zip.resize(22, 0);
    s3.put_object()
        .bucket(code_bucket)
        .key(&code_key)
        .body(empty_zip.into())
        .send()
        .await
        .expect("PutObject (code)");

    let path = workspace_root().join(TEMPLATE);
    let body = std::fs::read_to_string(&path).expect("the template");
    cloudformation(
        &endpoint,
        "CreateStack",
        &[
            ("StackName", name.as_str()),
            ("TemplateBody", body.as_str()),
            ("Capabilities.member.1", "CAPABILITY_IAM"),
            ("Parameters.member.1.ParameterKey", "BucketName"),
            ("Parameters.member.1.ParameterValue", name.as_str()),
            ("Parameters.member.2.ParameterKey", "TableName"),
            ("Parameters.member.2.ParameterValue", table.as_str()),
            ("Parameters.member.3.ParameterKey", COMPACTOR_SWITCH),
            ("Parameters.member.3.ParameterValue", code_bucket.as_str()),
            // So the table can be deleted afterwards.
            ("Parameters.member.4.ParameterKey", "DeletionProtection"),
            ("Parameters.member.4.ParameterValue", "false"),
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let described = loop {
        let xml =
            cloudformation(&endpoint, "DescribeStacks", &[("StackName", name.as_str())]).await;
        let status = xml_text(&xml, "<Stacks>", "StackStatus").to_string();
        if !status.ends_with("_IN_PROGRESS") {
            assert_eq!(status, "CREATE_COMPLETE", "{xml}");
            break xml;
        }
        assert!(std::time::Instant::now() < deadline, "stack still {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let function = physical_id(
        &endpoint,
        name,
        resource(&template, "AWS::Lambda::Function").0,
    )
    .await;
    let rule = physical_id(&endpoint, name, resource(&template, "AWS::Events::Rule").0).await;
    assert_eq!(
        xml_text(
            &described,
            "<OutputKey>CompactorFunctionName</OutputKey>",
            "OutputValue"
        ),
        function,
        "the CompactorFunctionName output"
    );

    // The function, configured by the settings lambda.rs reads.
    let conf = lambda_get(
        &endpoint,
        &format!("/2015-03-31/functions/{function}/configuration"),
    )
    .await;
    assert_eq!(conf["Runtime"], "provided.al2023", "{conf}");
    assert_eq!(conf["Handler"], "bootstrap", "{conf}");
    let number = |p: &str| json!(parameter_number(&template, p, "Default"));
    assert_eq!(conf["Timeout"], number("CompactorTimeoutSeconds"), "{conf}");
    assert_eq!(conf["MemorySize"], number("CompactorMemoryMB"), "{conf}");
    // Its environment is the template's, resolved for this stack, and makes
    // valid settings naming this stack's bucket and table.
    let (fn_id, declared) = resource(&template, "AWS::Lambda::Function");
    let (bucket_id, _) = resource(&template, "AWS::S3::Bucket");
    let (table_id, _) = resource(&template, "AWS::DynamoDB::Table");
    let declared: BTreeMap<String, String> = declared["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap_or_else(|| panic!("{fn_id} has no Environment.Variables"))
        .iter()
        .map(|(var, v)| {
            let resolved = match v["Ref"].as_str() {
                Some(r) if r == bucket_id => Some(name.to_string()),
                Some(r) if r == table_id => Some(table.to_string()),
                Some("AWS::Region") => Some("us-east-1".to_string()),
                _ => at_defaults(&template, v),
            };
            let resolved =
                resolved.unwrap_or_else(|| panic!("{fn_id}: cannot resolve {var} = {v}"));
            (var.clone(), resolved)
        })
        .collect();
    let deployed: BTreeMap<String, String> = conf["Environment"]["Variables"]
        .as_object()
        .unwrap_or_else(|| panic!("no environment: {conf}"))
        .iter()
        .map(|(var, v)| (var.clone(), v.as_str().expect("a string").to_string()))
        .collect();
    assert_eq!(
        deployed, declared,
        "the deployed function's environment (left) and {TEMPLATE}'s (right)"
    );
    let mut settings = Settings::default();
    for (var, value) in &deployed {
        let def = SETTINGS
            .iter()
            .find(|d| d.env() == *var)
            .unwrap_or_else(|| panic!("{var} is no setting's variable"));
        settings
            .apply(def.name, value)
            .unwrap_or_else(|e| panic!("{var}: {e}"));
    }
    settings.validate().expect("the function's settings");
    assert_eq!(
        (
            settings.backend,
            settings.bucket.as_deref(),
            settings.table.as_deref(),
            settings.region.as_deref(),
        ),
        (
            floe_core::settings::Backend::Aws,
            Some(name.as_str()),
            Some(table.as_str()),
            Some("us-east-1"),
        ),
        "the deployed function runs on this stack's bucket and table"
    );

    // Its schedule and the permission to run it.
    let described_rule = events(&endpoint, "DescribeRule", json!({ "Name": rule })).await;
    let minutes = parameter_number(&template, "CompactorScheduleMinutes", "Default");
    assert_eq!(
        described_rule["ScheduleExpression"],
        format!("rate({minutes} minutes)"),
        "{described_rule}"
    );
    assert_eq!(described_rule["State"], "ENABLED", "{described_rule}");
    let targets = events(&endpoint, "ListTargetsByRule", json!({ "Rule": rule })).await;
    let arns: Vec<&Value> = targets["Targets"]
        .as_array()
        .map(|t| t.iter().map(|t| &t["Arn"]).collect())
        .unwrap_or_default();
    assert_eq!(arns, [&conf["FunctionArn"]], "{rule} targets the function");
    let policy = lambda_get(
        &endpoint,
        &format!("/2015-03-31/functions/{function}/policy"),
    )
    .await;
    let policy: Value =
        serde_json::from_str(policy["Policy"].as_str().expect("a policy document")).expect("JSON");
    let st = &policy["Statement"][0];
    assert_eq!(
        st["Principal"]["Service"], "events.amazonaws.com",
        "{policy}"
    );
    assert_eq!(
        st["Condition"]["ArnLike"]["AWS:SourceArn"], described_rule["Arn"],
        "{policy}"
    );

    cloudformation(&endpoint, "DeleteStack", &[("StackName", name.as_str())]).await;
    // Retained by the stack (DeletionPolicy), if moto honours it.
    let _ = s3.delete_bucket().bucket(name).send().await;
    let _ = ddb_client(&endpoint)
        .delete_table()
        .table_name(table)
        .send()
        .await;
    s3.delete_object()
        .bucket(code_bucket)
        .key(&code_key)
        .send()
        .await
        .expect("DeleteObject (code)");
    s3.delete_bucket()
        .bucket(code_bucket)
        .send()
        .await
        .expect("DeleteBucket (code)");
}
