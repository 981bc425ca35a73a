//! The statements around a restore, run with psql: who else is connected, what the database
//! is like, creating the scratch database, counting rows, and swapping the scratch database in.
//! psql rather than a driver, so the same statements run by URL and inside a container.

use bollard::Docker;

use crate::{
    pg::program::{self, Program},
    pg::restore::RestoreError,
    pg::target::{Target, quote_ident, quote_literal},
};

/// How long terminating a session may take before the restore gives up on it.
const TERMINATE_WAIT_MS: u64 = 10_000;
/// Field and record separators of psql's unaligned output: characters no name holds.
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';

/// Statements run with psql against one database, for the steps around the load.
pub struct Admin<'a> {
    pub target: Target,
    pub docker: Option<&'a Docker>,
}

impl Admin<'_> {
    /// Runs `statements` one after another (each in its own transaction), stopping at the first
    /// error.
    pub async fn run(&self, statements: &[String]) -> Result<(), RestoreError> {
        self.rows_of(statements).await.map(drop)
    }

    /// The rows (fields as text) of the last statement.
    pub async fn rows_of(&self, statements: &[String]) -> Result<Vec<Vec<String>>, RestoreError> {
        let mut args = self.target.connection_args();
        args.extend(
            [
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "--set=ON_ERROR_STOP=1",
            ]
            .map(String::from),
        );
        args.push(format!("--field-separator={FIELD}"));
        args.push(format!("--record-separator={RECORD}"));
        for statement in statements {
            args.push(format!("--command={statement}"));
        }
        let program = Program {
            name: "psql",
            args,
            env: self.target.environment(),
        };
        let container = self.target.container_name().map(|name| {
            (
                self.docker
                    .expect("a container target comes with a Docker client"),
                name,
            )
        });
        let mut output = Vec::new();
        let outcome = program::run(&program, container, None, &mut output).await?;
        check(&outcome, "psql")?;
        let text = String::from_utf8_lossy(&output);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Ok(if text.is_empty() {
            Vec::new()
        } else {
            text.split(RECORD)
                .map(|record| record.split(FIELD).map(str::to_string).collect())
                .collect()
        })
    }

    /// Client sessions on `database` other than our own, as `user@address (application)`.
    pub async fn sessions(&self, database: &str) -> Result<Vec<String>, RestoreError> {
        let sql = format!(
            "SELECT coalesce(usename, '?') || '@' || coalesce(host(client_addr), 'local') \
             || coalesce(' (' || nullif(application_name, '') || ')', '') \
             FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend' ORDER BY pid",
            quote_literal(database)
        );
        Ok(self
            .rows_of(&[sql])
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect())
    }

    /// Owner, encoding, collation, ctype, locale provider and ICU locale of `database`, or None
    /// if it does not exist.
    pub async fn database_settings(
        &self,
        database: &str,
    ) -> Result<Option<Vec<String>>, RestoreError> {
        let sql = format!(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, \
             datlocprovider, coalesce(daticulocale, '') FROM pg_database WHERE datname = {}",
            quote_literal(database)
        );
        Ok(self.rows_of(&[sql]).await?.into_iter().next())
    }

    /// Every table of this database with its exact row count.
    pub async fn count_rows(&self) -> Result<Vec<(String, u64)>, RestoreError> {
        let sql = "SELECT n.nspname || '.' || c.relname, (xpath('/row/c/text()', query_to_xml(\
                   format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, \
                   '')))[1]::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1";
        self.rows_of(&[sql.to_string()])
            .await?
            .into_iter()
            .map(|row| match &row[..] {
                [name, count] => count
                    .parse()
                    .map(|count| (name.clone(), count))
                    .map_err(|_| RestoreError::Failed(format!("row count {count:?} of {name}"))),
                _ => Err(RestoreError::Failed(format!("unexpected row {row:?}"))),
            })
            .collect()
    }

    /// Puts `scratch` in the place of `database`: closes `database` to new connections, ends
    /// its sessions if allowed (else fails if there are any), renames both in one transaction
    /// and drops the old one. Returns how many sessions were terminated.
    pub async fn swap(
        &self,
        scratch: &str,
        database: &str,
        exists: bool,
        terminate: bool,
    ) -> Result<u64, RestoreError> {
        let (db, scratch_id) = (quote_ident(database), quote_ident(scratch));
        if !exists {
            self.run(&[format!("ALTER DATABASE {scratch_id} RENAME TO {db}")])
                .await?;
            return Ok(0);
        }
        let reopen = format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true");
        self.run(&[format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false")])
            .await?;
        let sessions = self.sessions(database).await?;
        let mut terminated = 0;
        if !sessions.is_empty() {
            if !terminate {
                let _ = self.run(&[reopen]).await;
                return Err(RestoreError::Sessions {
                    database: database.to_string(),
                    sessions,
                });
            }
            let sql = format!(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, {TERMINATE_WAIT_MS})) \
                 FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid() \
                 AND backend_type = 'client backend'",
                quote_literal(database)
            );
            terminated = self
                .rows_of(&[sql])
                .await?
                .first()
                .and_then(|row| row[0].parse().ok())
                .unwrap_or(0);
        }
        let old = scratch.replacen("__restore_", "__replaced_", 1);
        let old_id = quote_ident(&old);
        let renamed = self
            .run(&[format!(
                "BEGIN; ALTER DATABASE {db} RENAME TO {old_id}; \
                 ALTER DATABASE {scratch_id} RENAME TO {db}; COMMIT;"
            )])
            .await;
        if let Err(error) = renamed {
            let _ = self.run(&[reopen]).await;
            return Err(error);
        }
        if let Err(error) = self
            .run(&[format!("DROP DATABASE IF EXISTS {old_id} WITH (FORCE)")])
            .await
        {
            tracing::warn!("restored {database}, but the replaced database {old} is left: {error}");
        }
        Ok(terminated)
    }
}

/// CREATE DATABASE `name`, like the database described by `like` (see
/// [`Admin::database_settings`]) when there is one.
pub fn create_database(name: &str, like: Option<&[String]>) -> String {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    // Same owner, encoding and locale as the database it replaces.
    if let Some([owner, encoding, collate, ctype, provider, icu_locale]) = like {
        sql += &format!(
            " OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(owner),
            quote_literal(encoding),
            quote_literal(collate),
            quote_literal(ctype)
        );
        if provider == "i" {
            sql += &format!(
                " LOCALE_PROVIDER icu ICU_LOCALE {}",
                quote_literal(icu_locale)
            );
        }
    }
    sql
}

/// Ok if the program succeeded, else its failure in words.
pub fn check(outcome: &program::Outcome, program: &str) -> Result<(), RestoreError> {
    if outcome.success() {
        Ok(())
    } else {
        Err(RestoreError::Failed(outcome.describe(program)))
    }
}
