//! Requests to DynamoDB: strongly consistent reads, paginated queries,
//! batched writes retrying unprocessed items, conditional epoch-item updates
//! and transactions retrying conflicts (each within a bounded number of
//! attempts), with request and capacity accounting.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, WriteRequest,
};

use super::DynamoMetaStore;
use super::codec::{Item, item_size, s, write_units};
use super::keys::{flush_pk, key, seq_sk};
use crate::aws::{AwsStats, classify};
use crate::error::{Error, Result};
use crate::retry::Backoff;
use crate::types::StreamId;

/// Requests per BatchWriteItem (DynamoDB's limit).
pub(super) const BATCH: usize = 25;
/// Attempts for conflicts and unprocessed items before giving up `Unavailable`.
pub(super) const ATTEMPTS: u32 = 8;

impl DynamoMetaStore {
    /// Whether `stream` has a flush item above `seq` (one single-item Query).
    pub(super) async fn any_flush_after(&self, stream: &StreamId, seq: u64) -> Result<bool> {
        self.request();
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :v")
            .expression_attribute_values(":pk", s(flush_pk(stream)))
            .expression_attribute_values(":v", s(seq_sk(seq)))
            .projection_expression("pk")
            .limit(1)
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(&self.what("Query (flush items)"), e))?;
        self.account(out.consumed_capacity(), false);
        Ok(out.count > 0)
    }

    pub(super) fn what(&self, op: &str) -> String {
        format!("dynamodb {op} on table {}", self.table)
    }

    pub(super) fn request(&self) {
        AwsStats::inc(&self.stats.ddb_requests);
    }

    /// Accounts the write units of a multi-item write: what DynamoDB reports,
    /// but never less than `estimate`, Floe's own count from the items' sizes
    /// (`write_units`; a delete counts one unit, its least). DynamoDB's own
    /// figure is at least that; emulators report nothing for transactions and
    /// one unit for a whole BatchWriteItem of 25 deletes (moto), so the
    /// request accounting does not depend on the emulator.
    fn account_writes(&self, reported: &[ConsumedCapacity], estimate: u64) {
        let reported: f64 = reported
            .iter()
            .map(|c| {
                c.write_capacity_units()
                    .or(c.capacity_units())
                    .unwrap_or(0.0)
            })
            .sum();
        AwsStats::add_units(&self.stats.ddb_write_units, reported.max(estimate as f64));
    }

    pub(super) fn account(&self, cc: Option<&ConsumedCapacity>, write: bool) {
        let Some(cc) = cc else { return };
        let (r, w) = (cc.read_capacity_units(), cc.write_capacity_units());
        if r.is_some() || w.is_some() {
            AwsStats::add_units(&self.stats.ddb_read_units, r.unwrap_or(0.0));
            AwsStats::add_units(&self.stats.ddb_write_units, w.unwrap_or(0.0));
        } else if let Some(c) = cc.capacity_units() {
            let counter = if write {
                &self.stats.ddb_write_units
            } else {
                &self.stats.ddb_read_units
            };
            AwsStats::add_units(counter, c);
        }
    }

    pub(super) async fn get_item(&self, pk: String, sk: String) -> Result<Option<Item>> {
        self.request();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(&self.what("GetItem"), e))?;
        self.account(out.consumed_capacity(), false);
        Ok(out.item)
    }

    /// All items of `pk` (with `sk` matching `sk_cond`, e.g. `sk > :v`), in `sk`
    /// order, strongly consistent, paginated.
    pub(super) async fn query(
        &self,
        pk: &str,
        sk_cond: Option<(&str, AttributeValue)>,
        keys_only: bool,
    ) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        let expr = match &sk_cond {
            Some((c, _)) => format!("pk = :pk AND {c}"),
            None => "pk = :pk".to_string(),
        };
        loop {
            self.request();
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&expr)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .set_exclusive_start_key(start.take());
            if let Some((_, v)) = &sk_cond {
                req = req.expression_attribute_values(":v", v.clone());
            }
            if keys_only {
                req = req.projection_expression("pk, sk");
            }
            let page = req
                .send()
                .await
                .map_err(|e| classify(&self.what("Query"), e))?;
            self.account(page.consumed_capacity(), false);
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Writes `requests` with BatchWriteItem, 25 per call, retrying unprocessed
    /// items with bounded backoff.
    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(BATCH) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt >= ATTEMPTS {
                    return Err(Error::Unavailable(format!(
                        "{}: {} items still unprocessed after {ATTEMPTS} attempts",
                        self.what("BatchWriteItem"),
                        pending.len()
                    )));
                }
                if attempt > 0 {
                    Backoff::CONFLICT.wait(attempt).await;
                }
                attempt += 1;
                self.request();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| classify(&self.what("BatchWriteItem"), e))?;
                let sent = std::mem::take(&mut pending);
                pending = out
                    .unprocessed_items
                    .clone()
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                // Units of the items written (those sent, less those left
                // unprocessed).
                let estimate = sent
                    .iter()
                    .map(batch_write_units)
                    .sum::<u64>()
                    .saturating_sub(pending.iter().map(batch_write_units).sum());
                self.account_writes(out.consumed_capacity(), estimate);
            }
        }
        Ok(())
    }

    /// Sends a conditional UpdateItem of a gateway's epoch item; `Ok(Err(old))`
    /// if the condition failed (`old`: the item then, if DynamoDB returned it).
    /// An update that meets a commit's transaction on the item is rejected
    /// `TransactionConflict`; it is retried here, within a budget.
    pub(super) async fn update_epoch_item(
        &self,
        req: UpdateItemFluentBuilder,
        op: &str,
    ) -> Result<std::result::Result<Item, Option<Item>>> {
        let req = req
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                Backoff::CONFLICT.wait(attempt).await;
            }
            self.request();
            let e = match req.clone().send().await {
                Ok(out) => {
                    self.account(out.consumed_capacity(), true);
                    return Ok(Ok(out.attributes.unwrap_or_default()));
                }
                Err(e) => e,
            };
            match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    return Ok(Err(c.item().cloned()));
                }
                Some(UpdateItemError::TransactionConflictException(_)) => {}
                _ => return Err(classify(&self.what(op), e)),
            }
        }
        Err(Error::Unavailable(format!(
            "{}: still conflicting with transactions after {ATTEMPTS} attempts",
            self.what(op)
        )))
    }

    /// Runs one TransactWriteItems whose item 0 is an epoch check.
    /// `Ok(Err(reasons))` hands other cancellations back to the caller; conflicts
    /// are retried here, within a budget.
    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        token: Option<String>,
    ) -> Result<std::result::Result<(), TxFailure>> {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                Backoff::CONFLICT.wait(attempt).await;
            }
            self.request();
            let r = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .set_client_request_token(token.clone())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let e = match r {
                Ok(out) => {
                    self.account_writes(out.consumed_capacity(), transaction_write_units(&items));
                    return Ok(Ok(()));
                }
                Err(e) => e,
            };
            match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(tc)) => {
                    let reasons = tc.cancellation_reasons();
                    let code_of = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("");
                    if code_of(0) == "ConditionalCheckFailed" {
                        let item = reasons.first().and_then(|r| r.item()).cloned();
                        return Ok(Err(TxFailure::Fenced(item)));
                    }
                    if reasons.is_empty() {
                        return Ok(Err(TxFailure::Unknown));
                    }
                    if let Some(i) =
                        (1..reasons.len()).find(|&i| code_of(i) == "ConditionalCheckFailed")
                    {
                        let item = reasons.get(i).and_then(|r| r.item()).cloned();
                        return Ok(Err(TxFailure::Condition(i, item)));
                    }
                    let retriable = reasons.iter().any(|r| {
                        matches!(
                            r.code(),
                            Some(
                                "TransactionConflict"
                                    | "ThrottlingError"
                                    | "ProvisionedThroughputExceeded"
                            )
                        )
                    });
                    if !retriable {
                        return Err(Error::Internal(format!(
                            "{}: transaction cancelled: {:?}",
                            self.what("TransactWriteItems"),
                            reasons
                                .iter()
                                .map(|r| (r.code(), r.message()))
                                .collect::<Vec<_>>()
                        )));
                    }
                }
                Some(TransactWriteItemsError::IdempotentParameterMismatchException(_)) => {
                    return Ok(Err(TxFailure::TokenMismatch));
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => {}
                _ => return Err(classify(&self.what("TransactWriteItems"), e)),
            }
        }
        Err(Error::Unavailable(format!(
            "{}: still conflicting after {ATTEMPTS} attempts",
            self.what("TransactWriteItems")
        )))
    }
}

/// Why a transaction was cancelled, for the caller to resolve.
pub(super) enum TxFailure {
    /// The epoch ConditionCheck failed; the epoch item as it was, if returned.
    Fenced(Option<Item>),
    /// The condition of item `i` (≥ 1) failed; the item as it was, if returned.
    Condition(usize, Option<Item>),
    /// The same ClientRequestToken was used with different parameters.
    TokenMismatch,
    /// Cancelled without reasons (an emulator may omit them).
    Unknown,
}

/// What a BatchWriteItem request bills: a put by the item's size, a delete at
/// least one unit (the deleted item's size is not known here).
fn batch_write_units(r: &WriteRequest) -> u64 {
    match r.put_request() {
        Some(p) => write_units(item_size(p.item())),
        None => 1,
    }
}

/// What a successful TransactWriteItems bills, as DynamoDB prices it: twice
/// the units of each item. Exact for puts; a ConditionCheck and a delete count
/// one unit (the items Floe checks are under 1 KiB) and an update the size of
/// its key and values, so for large items it is a lower bound.
pub(super) fn transaction_write_units(items: &[TransactWriteItem]) -> u64 {
    let values =
        |v: Option<&std::collections::HashMap<String, AttributeValue>>| v.map_or(0, item_size);
    2 * items
        .iter()
        .map(|i| {
            if let Some(p) = i.put() {
                write_units(item_size(p.item()))
            } else if let Some(u) = i.update() {
                write_units(item_size(u.key()) + values(u.expression_attribute_values()))
            } else {
                1
            }
        })
        .sum::<u64>()
}
