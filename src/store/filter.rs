//! A `WHERE` clause made of the conditions a caller actually has. The read API's lists used to
//! say `($1 IS NULL OR installation_id = $1)` for an optional filter: one statement for every
//! combination, but one that neither SQLite nor PostgreSQL's generic plan can serve from an
//! index, so an installation's list read the whole table (6.6 s for `/api/deliveries` on a year's
//! inbox, docs/benchmarks.md). Each condition here is in the SQL only when it applies.

use sqlx::any::AnyArguments;
use sqlx::query::QueryAs;
use sqlx::{Any, Arguments};

/// A parameter value.
#[derive(Clone, Debug)]
pub enum Arg {
    Int(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}

/// Conditions joined by `AND`, with their parameters numbered in order.
#[derive(Debug, Default)]
pub struct Filter {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Adds `condition`, in which `?` stands for `arg`'s placeholder.
    pub fn and(&mut self, condition: &str, arg: impl Into<Arg>) -> &mut Filter {
        self.and_all(condition, [arg.into()])
    }

    /// Adds `condition`, in which each `?` in turn stands for the next of `args`.
    pub fn and_all(&mut self, condition: &str, args: impl IntoIterator<Item = Arg>) -> &mut Filter {
        let mut args = args.into_iter();
        let mut sql = String::with_capacity(condition.len() + 8);
        for c in condition.chars() {
            if c == '?' {
                self.args.push(args.next().expect("an argument for each placeholder"));
                sql.push_str(&format!("${}", self.args.len()));
            } else {
                sql.push(c);
            }
        }
        assert!(args.next().is_none(), "more arguments than placeholders in {condition}");
        self.conditions.push(sql);
        self
    }

    /// `column = value` when there is a value; nothing otherwise.
    pub fn eq<A: Into<Arg>>(&mut self, column: &str, value: Option<A>) -> &mut Filter {
        if let Some(v) = value {
            self.and(&format!("{column} = ?"), v);
        }
        self
    }

    /// The next parameter's placeholder (for a `LIMIT` after the conditions).
    pub fn next(&self) -> String {
        format!("${}", self.args.len() + 1)
    }

    /// The conditions, for after `WHERE` (`1 = 1` when there are none).
    pub fn sql(&self) -> String {
        if self.conditions.is_empty() { "1 = 1".to_string() } else { self.conditions.join(" AND ") }
    }

    /// The arguments, in placeholder order, followed by `more`.
    pub fn arguments(&self, more: &[Arg]) -> AnyArguments {
        let mut a = AnyArguments::default();
        for arg in self.args.iter().chain(more) {
            // Adding an i64 or a String to AnyArguments cannot fail.
            let _ = match arg {
                Arg::Int(v) => a.add(*v),
                Arg::Text(v) => a.add(v.clone()),
            };
        }
        a
    }
}

/// `sql` (which must use `filter`'s placeholders, then `more`'s) as a query for rows of `O`.
pub fn query_as<O>(sql: String, filter: &Filter, more: &[Arg]) -> QueryAs<'static, Any, O, AnyArguments>
where
    O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
{
    sqlx::query_as_with(sqlx::AssertSqlSafe(sql), filter.arguments(more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_conditions_given_are_in_the_sql() {
        let mut f = Filter::new();
        f.eq("installation_id", Some(7)).eq::<&str>("state", None).and("seq > ?", 10);
        f.and_all("(a, b) > (?, ?)", [Arg::Int(1), Arg::Int(2)]);
        assert_eq!(f.sql(), "installation_id = $1 AND seq > $2 AND (a, b) > ($3, $4)");
        assert_eq!(f.next(), "$5");
        assert_eq!(Filter::new().sql(), "1 = 1");
    }
}
