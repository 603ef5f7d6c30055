//! What kind of failure an error is: the one thing the binary needs to choose its
//! exit code. Each layer's error enum says which kind each of its variants is
//! ([`Classify`]); `cli::failure_of` finds the first classified error in a chain.
//!
//! The codes are the BSD `sysexits.h` ones, so scripts can tell a typo from a server
//! that is down without reading the message:
//!
//! | code | kind | for example |
//! |---|---|---|
//! | 0 | success | |
//! | 64 | [`Failure::Usage`] | an unknown flag or value, flags that cannot go together |
//! | 65 | [`Failure::BadInput`] | a malformed or missing dataset, manifest, run.json or certificate; a flight that does not exist; a rejected append |
//! | 69 | [`Failure::Unreachable`] | a load target, a database or a listen address that cannot be reached |
//! | 70 | [`Failure::Internal`] | anything else: a bug, a failed thread, a database error mid-query |

/// A kind of failure, with its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Usage,
    BadInput,
    Unreachable,
    Internal,
}

impl Failure {
    pub fn exit_code(self) -> u8 {
        match self {
            Failure::Usage => 64,
            Failure::BadInput => 65,
            Failure::Unreachable => 69,
            Failure::Internal => 70,
        }
    }
}

/// An error that knows what kind of failure it is.
pub trait Classify {
    fn failure(&self) -> Failure;
}

/// File and socket errors: a missing or unreadable path is the caller's input, a
/// refused connection or a taken address the environment's, anything else ours.
impl Classify for std::io::Error {
    fn failure(&self) -> Failure {
        use std::io::ErrorKind as Kind;
        match self.kind() {
            Kind::NotFound
            | Kind::PermissionDenied
            | Kind::AlreadyExists
            | Kind::InvalidInput
            | Kind::InvalidData
            | Kind::IsADirectory
            | Kind::NotADirectory
            | Kind::DirectoryNotEmpty => Failure::BadInput,
            Kind::ConnectionRefused
            | Kind::ConnectionReset
            | Kind::ConnectionAborted
            | Kind::TimedOut
            | Kind::AddrInUse
            | Kind::AddrNotAvailable
            | Kind::HostUnreachable
            | Kind::NetworkUnreachable => Failure::Unreachable,
            _ => Failure::Internal,
        }
    }
}

impl Classify for crate::choice::UnknownChoice {
    fn failure(&self) -> Failure {
        Failure::Usage
    }
}

/// Values a person typed that the domain refuses (an id, a time, a window, a limit,
/// an event, a dataset size): at the command line, usage errors. (The HTTP API maps
/// the same errors to 400 in `http::error`.)
macro_rules! typed_values_are_usage {
    ($($error:ty),*) => {
        $(impl Classify for $error {
            fn failure(&self) -> Failure {
                Failure::Usage
            }
        })*
    };
}

typed_values_are_usage!(
    crate::domain::IdError,
    crate::domain::TimeError,
    crate::domain::LimitError,
    crate::domain::EventKindError,
    crate::domain::ReasonError,
    crate::domain::ReportingError,
    crate::dataset::SpecError
);
