//! Project metadata: projects, hashed keys, catalogs. A small SQLite database in the data dir,
//! in WAL mode so that admin commands can change it while a server runs on the same dir; the
//! server notices changes through `PRAGMA data_version`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use opentally_protocol::{Catalog, CatalogError};
use rusqlite::{Connection, OptionalExtension, params};

use crate::control::{CollectionRule, RuleError};
use crate::secret::{Secret, SecretKind, hash_secret};

/// A project as the collector uses it.
#[derive(Debug, Clone)]
pub struct Project {
    pub id: i64,
    pub name: String,
    /// `None`: open mode, any event accepted.
    pub catalog: Option<Arc<Catalog>>,
    pub retention_days: u32,
    /// The operator's remote controls (`project set-collection`); usually none.
    pub collection: Arc<[CollectionRule]>,
}

/// A row of `project list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectSummary {
    pub name: String,
    pub created_at: String,
    pub catalog: Option<String>,
    pub events_in_catalog: usize,
    pub retention_days: u32,
}

/// The longest retention a project may set: ten years.
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// The secrets of a new project, shown once.
#[derive(Debug)]
pub struct NewProject {
    pub project: Project,
    pub write_key: Secret,
    pub admin_token: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("project {0:?} already exists")]
    Exists(String),
    #[error("no project named {0:?}")]
    NotFound(String),
    #[error(
        "project name {0:?} is not usable: use 1 to 63 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
    )]
    BadName(String),
    #[error("the catalog has {} error(s):\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Catalog(Vec<CatalogError>),
    #[error("project {0:?} was deleted and its data is still being removed; try again in a minute")]
    DeletionPending(String),
    #[error("a retention of {0} days is not usable: keep 1 to {MAX_RETENTION_DAYS} days")]
    BadRetention(u32),
    #[error(transparent)]
    BadRule(#[from] RuleError),
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot create the data dir: {0}")]
    Io(#[from] std::io::Error),
}

/// The metadata database.
#[derive(Debug)]
pub struct MetaStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    write_key_hash BLOB NOT NULL UNIQUE,
    admin_token_hash BLOB NOT NULL UNIQUE,
    catalog TEXT,
    retention_days INTEGER NOT NULL DEFAULT 365
);
CREATE TABLE IF NOT EXISTS deletions (
    name TEXT PRIMARY KEY,
    requested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS collection_rules (
    project_id INTEGER NOT NULL,
    versions TEXT NOT NULL,
    collect INTEGER NOT NULL,
    sample REAL,
    PRIMARY KEY (project_id, versions)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

fn check_name(name: &str) -> Result<(), MetaError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(MetaError::BadName(name.to_owned()))
    }
}

fn parse_catalog(src: Option<&str>) -> Result<Option<Arc<Catalog>>, MetaError> {
    src.map(|s| {
        Catalog::from_toml_str(s)
            .map(Arc::new)
            .map_err(MetaError::Catalog)
    })
    .transpose()
}

impl MetaStore {
    /// Opens (creating when needed) `meta.sqlite3` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<MetaStore, MetaError> {
        crate::perms::secure_dir(data_dir)?;
        let layout = opentally_log::DataDir::new(data_dir);
        let path = layout.meta_db();
        // Made 0600 before SQLite writes the secret into it (or opens it, if it exists).
        if !path.exists() {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
        }
        crate::perms::secure_file(&path)?;
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        for suffix in ["-wal", "-shm"] {
            crate::perms::secure_file(&layout.meta_db_sidecar(suffix))?;
        }
        Ok(MetaStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (every change is one
        // statement or transaction), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates a project; `catalog` is the TOML source, or `None` for open mode.
    pub fn create_project(
        &self,
        name: &str,
        catalog: Option<&str>,
    ) -> Result<NewProject, MetaError> {
        check_name(name)?;
        let parsed = parse_catalog(catalog)?;
        let write_key = Secret::generate(SecretKind::WriteKey);
        let admin_token = Secret::generate(SecretKind::AdminToken);
        let mut guard = self.conn();
        let conn = guard.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool = conn
            .query_row("SELECT 1 FROM projects WHERE name = ?1", [name], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false);
        if exists {
            return Err(MetaError::Exists(name.to_owned()));
        }
        if Self::deletion_pending(&conn, name)? {
            return Err(MetaError::DeletionPending(name.to_owned()));
        }
        // Ids are never reused: a deleted project's id would hand its successor the dedup
        // entries (keyed by project id and message id) of the events it deleted.
        let id: i64 = conn.query_row(
            "SELECT max(coalesce((SELECT max(id) FROM projects), 0),
                        coalesce((SELECT CAST(value AS INTEGER) FROM settings
                                  WHERE key = 'last_project_id'), 0)) + 1",
            [],
            |r| r.get(0),
        )?;
        conn.execute(
            "INSERT INTO projects (id, name, created_at, write_key_hash, admin_token_hash, catalog)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                name,
                opentally_protocol::Timestamp::now().to_string(),
                hash_secret(write_key.expose()).as_slice(),
                hash_secret(admin_token.expose()).as_slice(),
                catalog
            ],
        )?;
        conn.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES ('last_project_id', ?1)",
            [id],
        )?;
        conn.commit()?;
        let project = Project {
            id,
            name: name.to_owned(),
            catalog: parsed,
            retention_days: 365,
            collection: Arc::from([]),
        };
        Ok(NewProject {
            project,
            write_key,
            admin_token,
        })
    }

    pub fn list_projects(&self) -> Result<Vec<ProjectSummary>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, created_at, catalog, retention_days FROM projects ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            let catalog: Option<String> = r.get(2)?;
            Ok(ProjectSummary {
                name: r.get(0)?,
                created_at: r.get(1)?,
                events_in_catalog: catalog
                    .as_deref()
                    .and_then(|c| Catalog::from_toml_str(c).ok())
                    .map_or(0, |c| c.events.len()),
                catalog,
                retention_days: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces a project's write key; the old one stops working at once.
    pub fn rotate_write_key(&self, name: &str) -> Result<Secret, MetaError> {
        self.rotate(name, SecretKind::WriteKey, "write_key_hash")
    }

    /// Replaces a project's admin token; the old one stops working at once.
    pub fn rotate_admin_token(&self, name: &str) -> Result<Secret, MetaError> {
        self.rotate(name, SecretKind::AdminToken, "admin_token_hash")
    }

    fn rotate(&self, name: &str, kind: SecretKind, column: &str) -> Result<Secret, MetaError> {
        let key = Secret::generate(kind);
        let n = self.conn().execute(
            &format!("UPDATE projects SET {column} = ?1 WHERE name = ?2"),
            params![hash_secret(key.expose()).as_slice(), name],
        )?;
        if n == 0 {
            return Err(MetaError::NotFound(name.to_owned()));
        }
        Ok(key)
    }

    /// Deletes a project: its keys stop working, and a deletion of its data is recorded (in the
    /// same transaction) for the loading process, which removes its events and then calls
    /// [`MetaStore::finish_deletion`]. Until then no project of that name can be created.
    pub fn delete_project(&self, name: &str) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM collection_rules WHERE project_id IN (SELECT id FROM projects WHERE name = ?1)",
            [name],
        )?;
        let n = tx.execute("DELETE FROM projects WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(MetaError::NotFound(name.to_owned()));
        }
        tx.execute(
            "INSERT OR REPLACE INTO deletions (name, requested_at) VALUES (?1, ?2)",
            params![name, opentally_protocol::Timestamp::now().to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Projects deleted whose data has not been removed yet.
    pub fn pending_deletions(&self) -> Result<Vec<String>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM deletions ORDER BY name")?;
        let names = stmt.query_map([], |r| r.get(0))?;
        Ok(names.collect::<Result<_, _>>()?)
    }

    /// Records that the data of the deleted project `name` is gone.
    pub fn finish_deletion(&self, name: &str) -> Result<(), MetaError> {
        self.conn()
            .execute("DELETE FROM deletions WHERE name = ?1", [name])?;
        Ok(())
    }

    fn deletion_pending(conn: &Connection, name: &str) -> Result<bool, MetaError> {
        Ok(conn
            .query_row("SELECT 1 FROM deletions WHERE name = ?1", [name], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false))
    }

    /// Sets (or with `None`, removes: open mode) a project's catalog.
    pub fn set_catalog(&self, name: &str, catalog: Option<&str>) -> Result<(), MetaError> {
        parse_catalog(catalog)?;
        let n = self.conn().execute(
            "UPDATE projects SET catalog = ?1 WHERE name = ?2",
            params![catalog, name],
        )?;
        if n == 0 {
            return Err(MetaError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Sets how many days of a project's events are kept (1 to [`MAX_RETENTION_DAYS`]).
    pub fn set_retention_days(&self, name: &str, days: u32) -> Result<(), MetaError> {
        if !(1..=MAX_RETENTION_DAYS).contains(&days) {
            return Err(MetaError::BadRetention(days));
        }
        let n = self.conn().execute(
            "UPDATE projects SET retention_days = ?1 WHERE name = ?2",
            params![days, name],
        )?;
        if n == 0 {
            return Err(MetaError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Sets the remote control for a range of a project's app versions (`None`: every
    /// version), replacing the one that range had; `control` `None` removes it (collect as usual).
    /// Returns the project's rules after the change.
    pub fn set_collection(
        &self,
        name: &str,
        versions: Option<&str>,
        control: Option<opentally_protocol::Control>,
    ) -> Result<Vec<CollectionRule>, MetaError> {
        let rule = CollectionRule::new(
            versions,
            control.unwrap_or(opentally_protocol::Control {
                collect: true,
                sample: None,
            }),
        )?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id: i64 = tx
            .query_row("SELECT id FROM projects WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| MetaError::NotFound(name.to_owned()))?;
        tx.execute(
            "DELETE FROM collection_rules WHERE project_id = ?1 AND versions = ?2",
            params![id, rule.versions],
        )?;
        if control.is_some() {
            tx.execute(
                "INSERT INTO collection_rules (project_id, versions, collect, sample)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, rule.versions, rule.control.collect, rule.control.sample],
            )?;
        }
        let rules = Self::collection_rules(&tx, id)?;
        tx.commit()?;
        Ok(rules)
    }

    fn collection_rules(
        conn: &Connection,
        project_id: i64,
    ) -> Result<Vec<CollectionRule>, MetaError> {
        let mut stmt = conn.prepare(
            "SELECT versions, collect, sample FROM collection_rules WHERE project_id = ?1
             ORDER BY versions",
        )?;
        let rows = stmt.query_map([project_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, Option<f64>>(2)?,
            ))
        })?;
        let mut rules = Vec::new();
        for row in rows {
            let (versions, collect, sample) = row?;
            // Checked when stored: a rule that fails now was edited by hand; refuse the project
            // rather than collect what the operator stopped.
            rules.push(CollectionRule::new(
                Some(&versions),
                opentally_protocol::Control { collect, sample },
            )?);
        }
        Ok(rules)
    }

    fn project_where(
        &self,
        clause: &str,
        arg: &dyn rusqlite::ToSql,
    ) -> Result<Option<Project>, MetaError> {
        let conn = self.conn();
        let row: Option<(i64, String, Option<String>, u32)> = conn
            .query_row(
                &format!("SELECT id, name, catalog, retention_days FROM projects WHERE {clause}"),
                [arg],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((id, name, catalog, retention_days)) = row else {
            return Ok(None);
        };
        // A catalog is validated when stored, so a stored one that fails now means the file was
        // edited by hand; refuse the project rather than run it in open mode by accident.
        let catalog = parse_catalog(catalog.as_deref())?;
        let collection = Self::collection_rules(&conn, id)?.into();
        Ok(Some(Project {
            id,
            name,
            catalog,
            retention_days,
            collection,
        }))
    }

    pub fn project_by_write_key(&self, key: &str) -> Result<Option<Project>, MetaError> {
        self.project_where("write_key_hash = ?1", &hash_secret(key).as_slice())
    }

    pub fn project_by_admin_token(&self, token: &str) -> Result<Option<Project>, MetaError> {
        self.project_by_admin_token_hash(&hash_secret(token))
    }

    /// The project whose admin token hashes to `hash` (a dashboard session keeps the hash only).
    pub fn project_by_admin_token_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<Project>, MetaError> {
        self.project_where("admin_token_hash = ?1", &hash.as_slice())
    }

    pub fn project_by_name(&self, name: &str) -> Result<Option<Project>, MetaError> {
        self.project_where("name = ?1", &name)
    }

    /// Changes whenever another connection (an admin command) commits a change.
    pub fn data_version(&self) -> Result<i64, MetaError> {
        Ok(self
            .conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// The server's secret for hashing install ids, created once per data dir.
    pub fn server_secret(&self) -> Result<[u8; 32], MetaError> {
        let conn = self.conn();
        let existing: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'install_secret'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(v) = existing.and_then(|v| <[u8; 32]>::try_from(v).ok()) {
            return Ok(v);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random source is available");
        conn.execute(
            "INSERT OR IGNORE INTO settings (key, value) VALUES ('install_secret', ?1)",
            [secret.as_slice()],
        )?;
        // Another process may have won the race; read back whichever secret was stored.
        let stored: Vec<u8> = conn.query_row(
            "SELECT value FROM settings WHERE key = 'install_secret'",
            [],
            |r| r.get(0),
        )?;
        Ok(<[u8; 32]>::try_from(stored).unwrap_or(secret))
    }
}
