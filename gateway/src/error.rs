//! Kafka error codes at the protocol edge.

use floe_flusher::AppendError;
pub use kafka_protocol::error::ResponseError as Code;

/// An error to put in a Kafka response: a code plus a message for the fields
/// that carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: Code,
    pub message: String,
    /// Produce only: indexes of the records that made a batch invalid (KIP-467).
    pub record_errors: Vec<i32>,
}

impl KafkaError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        KafkaError {
            code,
            message: message.into(),
            record_errors: Vec::new(),
        }
    }
    pub fn code(&self) -> i16 {
        self.code.code()
    }
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// Storage errors seen by clients: retriable unless an operator must act.
impl From<floe_core::Error> for KafkaError {
    fn from(e: floe_core::Error) -> Self {
        use floe_core::ErrorKind as K;
        let code = match e.kind() {
            K::Unavailable | K::Ambiguous => Code::KafkaStorageError,
            K::Fenced => Code::NotLeaderOrFollower,
            K::AlreadyExists => Code::TopicAlreadyExists,
            K::NotFound => Code::UnknownTopicOrPartition,
            K::Precondition => Code::ConcurrentTransactions,
            K::InvalidInput => Code::InvalidRequest,
            K::Denied => Code::ClusterAuthorizationFailed,
            K::Corrupt | K::Config | K::Internal => Code::UnknownServerError,
        };
        KafkaError::new(code, e.to_string())
    }
}

impl From<AppendError> for KafkaError {
    fn from(e: AppendError) -> Self {
        let code = match &e {
            AppendError::OutOfOrderSequence { .. } => Code::OutOfOrderSequenceNumber,
            AppendError::InvalidProducerEpoch { .. } => Code::InvalidProducerEpoch,
            AppendError::Storage(_) => Code::KafkaStorageError,
            AppendError::NotOwner(_) | AppendError::ShuttingDown => Code::NotLeaderOrFollower,
            AppendError::Deleted => Code::UnknownTopicOrPartition,
        };
        KafkaError::new(code, e.to_string())
    }
}
