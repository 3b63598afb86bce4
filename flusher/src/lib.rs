//! The durable write path. Produced batches are buffered into one open segment
//! for all partitions; the segment is sealed when it is full or the flush interval
//! passes; sealing assigns offsets and checks idempotent-producer sequences; the
//! object is uploaded (pipelined), its flush record committed (in seal order), and
//! only then are the appends acknowledged. A failed commit fails every later
//! uncommitted flush too and rolls the in-memory offsets back, so a partition
//! never has a hole.

mod cache;
mod checkpoint;
mod flusher;
mod log;
mod recovery;

pub use cache::ReadCache;
pub use checkpoint::{CHECKPOINT_CHUNK, checkpoint_once, trim_point};
pub use flusher::{
    AppendError, AppendOk, AppendTicket, BatchIn, Flusher, FlusherConfig, FlusherStats,
};
pub use log::{Lease, LogSnapshot, PartitionLog};
pub use recovery::{Adoption, adopt_partitions, recover_partition_logs, trim_streams};
