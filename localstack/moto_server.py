"""Runs moto's server (the pinned moto[server] in requirements-moto.txt) with
two changes: DynamoDB requests are served one at a time, and a DynamoDB
transaction keeps its rollback state per item.

moto's server answers requests on concurrent threads, and its DynamoDB backend
has no isolation between them: a TransactWriteItems whose ConditionCheck has
passed can still be writing its items while another request changes the
checked item or reads the table. Real DynamoDB serializes a transaction with
the writes and reads of its items (a conflicting write is refused), and Floe's
fencing relies on that: a fenced gateway's in-flight flush commit either lands
before the fence, and the claimer reads it, or fails. Seen without the lock: a
gateway killed with a commit in flight had it land after its fence and after
the new owner read its records, and an idempotent producer's retry was then
appended twice. Serving DynamoDB requests one at a time gives moto that
isolation (S3 requests still run concurrently).

moto 5.2.5's TransactWriteItems deep-copies the *whole table* once per item in
the transaction, before running it, so that it can restore the table if the
transaction fails. The cost grows with the table, not with the transaction: a
51-item claim on a table holding a few thousand items takes about a second,
and every flush commit (a 2-item transaction) gets slower as flush records
accumulate. Suites that run for minutes against one table then see commits
stall for seconds, which real DynamoDB never does.

This launcher keeps moto's transaction semantics (all items applied, or none)
but saves only the items the transaction names: before the transaction it
deep-copies each named item (or notes that it is absent), lets moto run the
transaction with its table copies made by reference, and on any failure puts
each named item back as it was. Nothing else in moto changes.

Usage: python moto_server.py [moto_server arguments], e.g. -H 127.0.0.1 -p 5599
"""

import copy
import sys
import threading

from moto.dynamodb import models as ddb_models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main


class _TablesByReference:
    """Stands in for the `copy` module inside moto's DynamoDB backend: a Table
    is "copied" by reference (this launcher saves the touched items itself);
    anything else is copied as before."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def _named_key(table, op_type, op):
    """The (hash, range) DynamoTypes of the item an operation names, or None."""
    attrs = op.get("Item") if op_type == "Put" else op.get("Key")
    if not isinstance(attrs, dict) or table.hash_key_attr not in attrs:
        return None
    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_key = None
    if table.range_key_attr is not None:
        if table.range_key_attr not in attrs:
            return None
        range_key = DynamoType(attrs[table.range_key_attr])
    return hash_key, range_key


def _save(backend, transact_items):
    saved = []
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue  # moto refuses it before writing anything
        op_type, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        if table is None:
            continue
        key = _named_key(table, op_type, op)
        if key is None:
            continue
        hash_key, range_key = key
        if table.range_key_attr is not None:
            current = table.items.get(hash_key, {}).get(range_key)
        else:
            current = table.items.get(hash_key)
        saved.append((table, hash_key, range_key, copy.deepcopy(current)))
    return saved


def _restore(saved):
    # Newest first: if an item is named twice (moto refuses that, but only
    # when it reaches the second one), the oldest saved state wins.
    for table, hash_key, range_key, item in reversed(saved):
        if table.range_key_attr is not None:
            rows = table.items[hash_key]
            if item is None:
                rows.pop(range_key, None)
                if not rows:
                    table.items.pop(hash_key, None)
            else:
                rows[range_key] = item
        elif item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item


_moto_transact_write_items = ddb_models.DynamoDBBackend.transact_write_items


def _transact_write_items(self, transact_items):
    saved = _save(self, transact_items)
    try:
        return _moto_transact_write_items(self, transact_items)
    except Exception:
        _restore(saved)
        raise


ddb_models.copy = _TablesByReference()
ddb_models.DynamoDBBackend.transact_write_items = _transact_write_items

_dynamodb_lock = threading.Lock()
_moto_call_action = DynamoHandler.call_action


def _serialized_call_action(self):
    with _dynamodb_lock:
        return _moto_call_action(self)


DynamoHandler.call_action = _serialized_call_action

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
