//! One error type for storage and configuration, with a kind that tells the
//! caller what to do about it.

/// What the caller should do with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A storage or network service is unavailable or throttling. Retry with
    /// backoff within the operation's budget, then surface a retriable error.
    Unavailable,
    /// The outcome is unknown (a timeout after the request was sent). Resolve by
    /// reading back before deciding; never assume failure.
    Ambiguous,
    /// This gateway's epoch is no longer current: another incarnation or owner
    /// took over. Stop writing; nothing this gateway commits can land.
    Fenced,
    /// A conditional create found the key already present.
    AlreadyExists,
    /// A conditional update found a different version than expected.
    Precondition,
    /// The thing asked for does not exist.
    NotFound,
    /// The request is malformed or violates a limit; retrying will not help.
    InvalidInput,
    /// Stored bytes failed a checksum or could not be parsed.
    Corrupt,
    /// Settings are invalid; refuse to start.
    Config,
    /// Access denied or credentials missing: an operator must act.
    Denied,
    /// An invariant was broken: a bug in Floe.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same operation may succeed.
    pub fn is_retriable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Ambiguous)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("outcome unknown: {0}")]
    Ambiguous(String),
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("precondition failed: {0}")]
    Precondition(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("access denied: {0}")]
    Denied(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Ambiguous(_) => ErrorKind::Ambiguous,
            Error::Fenced(_) => ErrorKind::Fenced,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::Precondition(_) => ErrorKind::Precondition,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Corrupt(_) => ErrorKind::Corrupt,
            Error::Config(_) => ErrorKind::Config,
            Error::Denied(_) => ErrorKind::Denied,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.kind().is_retriable()
    }

    /// The message, without the kind's prefix.
    pub fn message(&self) -> &str {
        match self {
            Error::Unavailable(m)
            | Error::Ambiguous(m)
            | Error::Fenced(m)
            | Error::AlreadyExists(m)
            | Error::Precondition(m)
            | Error::NotFound(m)
            | Error::InvalidInput(m)
            | Error::Corrupt(m)
            | Error::Config(m)
            | Error::Denied(m)
            | Error::Internal(m) => m,
        }
    }

    /// An error of `kind` with `message`.
    pub fn of_kind(kind: ErrorKind, message: String) -> Error {
        match kind {
            ErrorKind::Unavailable => Error::Unavailable(message),
            ErrorKind::Ambiguous => Error::Ambiguous(message),
            ErrorKind::Fenced => Error::Fenced(message),
            ErrorKind::AlreadyExists => Error::AlreadyExists(message),
            ErrorKind::Precondition => Error::Precondition(message),
            ErrorKind::NotFound => Error::NotFound(message),
            ErrorKind::InvalidInput => Error::InvalidInput(message),
            ErrorKind::Corrupt => Error::Corrupt(message),
            ErrorKind::Config => Error::Config(message),
            ErrorKind::Denied => Error::Denied(message),
            ErrorKind::Internal => Error::Internal(message),
        }
    }

    /// An I/O error from the local filesystem. Local disks fail by running out of
    /// space or permission, which an operator must fix, but we treat them as
    /// retriable so a transient condition (ENOSPC cleared) heals by itself.
    pub fn io(context: &str, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("{context}: {e}")),
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(format!("{context}: {e}")),
            std::io::ErrorKind::PermissionDenied => Error::Denied(format!("{context}: {e}")),
            _ => Error::Unavailable(format!("{context}: {e}")),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
