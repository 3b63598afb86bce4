//! Idempotent-producer sequence rules, as Apache Kafka applies them: a window of
//! the last five batches per producer and partition, duplicates answered with the
//! original offsets, epochs fence older producer instances. The write path checks
//! appends with them; replay rebuilds producer state with `apply_batch`.

use crate::types::{PRODUCER_WINDOW, ProducerBatch, ProducerState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// Append as a new batch.
    Append,
    /// Already appended: answer with the original offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
    /// Sequence gap or reorder: OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder { expected: i32 },
    /// An older epoch than the partition has seen: INVALID_PRODUCER_EPOCH.
    StaleEpoch { current: i16 },
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

/// Checks a batch `(epoch, first_seq..=last_seq)` against the producer's state.
pub fn check_sequence(
    state: Option<&ProducerState>,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
) -> SeqCheck {
    let Some(s) = state else {
        // No state (new producer id, or state expired): Kafka accepts any sequence.
        return SeqCheck::Append;
    };
    if epoch < s.epoch {
        return SeqCheck::StaleEpoch { current: s.epoch };
    }
    if epoch > s.epoch {
        return if first_seq == 0 {
            SeqCheck::Append
        } else {
            SeqCheck::OutOfOrder { expected: 0 }
        };
    }
    if let Some(b) = s
        .batches
        .iter()
        .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
    {
        return SeqCheck::Duplicate {
            base_offset: b.base_offset,
            last_offset: b.last_offset,
        };
    }
    match s.batches.last() {
        None => SeqCheck::Append,
        Some(last) if next_seq(last.last_seq) == first_seq => SeqCheck::Append,
        Some(last) => SeqCheck::OutOfOrder {
            expected: next_seq(last.last_seq),
        },
    }
}

/// Records an appended batch in the producer's state.
pub fn apply_batch(state: &mut ProducerState, batch: &ProducerBatch) {
    if batch.epoch != state.epoch {
        state.epoch = batch.epoch;
        state.batches.clear();
    }
    state.batches.push(*batch);
    if state.batches.len() > PRODUCER_WINDOW {
        let excess = state.batches.len() - PRODUCER_WINDOW;
        state.batches.drain(..excess);
    }
    state.last_timestamp = state.last_timestamp.max(batch.max_timestamp);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(epoch: i16, first: i32, last: i32, base: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            epoch,
            first_seq: first,
            last_seq: last,
            base_offset: base,
            last_offset: base + (last - first) as i64,
            max_timestamp: 0,
        }
    }

    #[test]
    fn kafka_sequence_rules() {
        let mut s = ProducerState::default();
        assert_eq!(check_sequence(None, 0, 17, 20), SeqCheck::Append);
        apply_batch(&mut s, &b(0, 0, 9, 100));
        assert_eq!(check_sequence(Some(&s), 0, 10, 19), SeqCheck::Append);
        assert_eq!(
            check_sequence(Some(&s), 0, 0, 9),
            SeqCheck::Duplicate {
                base_offset: 100,
                last_offset: 109
            }
        );
        assert_eq!(
            check_sequence(Some(&s), 0, 11, 19),
            SeqCheck::OutOfOrder { expected: 10 }
        );
        assert_eq!(
            check_sequence(Some(&s), 1, 5, 9),
            SeqCheck::OutOfOrder { expected: 0 }
        );
        assert_eq!(check_sequence(Some(&s), 1, 0, 9), SeqCheck::Append);
        for i in 1..=5 {
            apply_batch(&mut s, &b(0, i * 10, i * 10 + 9, 100 + i as i64 * 10));
        }
        assert_eq!(s.batches.len(), PRODUCER_WINDOW);
        // The first batch fell out of the window: no longer a known duplicate.
        assert_eq!(
            check_sequence(Some(&s), 0, 0, 9),
            SeqCheck::OutOfOrder { expected: 60 }
        );
        apply_batch(&mut s, &b(2, 0, 0, 500));
        assert_eq!(
            check_sequence(Some(&s), 1, 1, 1),
            SeqCheck::StaleEpoch { current: 2 }
        );
        let mut w = ProducerState::default();
        apply_batch(&mut w, &b(0, i32::MAX - 1, i32::MAX, 0));
        assert_eq!(check_sequence(Some(&w), 0, 0, 3), SeqCheck::Append);
    }
}
