//! Ids that must never be mistaken for one another. A GitHub account id, a comment id, an issue
//! number and a deployment id are all integers; where the gate decides who may do what, the
//! account is a [`UserId`], so an approval, a hold, a denial, a pinned login, a pusher, a team
//! member or a permission cannot be keyed by the wrong number without the compiler saying so.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A GitHub account id (users, bots and organizations): the identity; a login is for display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<i64> for UserId {
    fn from(id: i64) -> UserId {
        UserId(id)
    }
}

impl UserId {
    /// The number, for storage and GitHub's API.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// Declares an id newtype: its number for storage and GitHub's API, displayed as the number.
macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id!(
    /// An installation of the App.
    InstallationId
);
id!(
    /// A repository, by GitHub's id (its name can change; the id does not).
    RepoId
);
id!(
    /// An issue's (or a pull request's) number within its repository.
    IssueNumber
);
