//! PostgreSQL: what cutover does to the stack's database. A [`target`] names a database (a URL,
//! or a container and a database name); [`dump`] streams `pg_dump` into an atomic, checksummed
//! file; [`restore`] loads a dump into a scratch database and swaps it in only once verified;
//! [`query`] runs SQL and returns rows as [`value`]s; [`backups`] lists and prunes dump files;
//! [`program`] runs the PostgreSQL client programs on this host or inside a container.
//!
//! Nothing here knows about scripts: the `pg::*` host module (`src/host/pg.rs`) reads option
//! maps, calls these, and turns their plain results into Rhai values.

pub(crate) mod backups;
pub(crate) mod dump;
pub(crate) mod program;
pub(crate) mod query;
pub(crate) mod restore;
pub(crate) mod target;
pub(crate) mod value;
