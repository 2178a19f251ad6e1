//! A private PostgreSQL server for tests that must crash, restart or
//! reconfigure a server: `initdb` into a temporary directory, a free port on
//! loopback, trust authentication, started and stopped with `pg_ctl`. The
//! shared cluster is never touched.
//!
//! The PostgreSQL binaries are looked up in `EVENTCORE_PG_BIN`, else the
//! newest `/usr/lib/postgresql/<version>/bin`, else `PATH`. `initdb` and the
//! server refuse to run as root, so when the test runs as root they run as
//! the `postgres` user (through `runuser`), which then owns the directory.
//!
//! [`ServerSetup`] configures a server before its first start: files in the
//! data directory (a TLS certificate and key), `postgresql.conf` settings
//! (`ssl = on`) and a `pg_hba.conf` of the test's own (`hostssl` only).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a private server could not be set up or driven.
#[derive(Debug, thiserror::Error)]
pub enum PrivatePostgresError {
    /// A PostgreSQL program could not be run at all.
    #[error("cannot run `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PostgreSQL program ran and failed.
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its arguments.
        args: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (and stdout).
        stderr: String,
    },
    /// The temporary directory or the port could not be had.
    #[error("preparing the server")]
    Prepare(#[from] std::io::Error),
}

/// One private server. Dropping it stops the server (immediately) and
/// removes its directory.
///
/// ```no_run
/// use eventcore_chaos::private_postgres::PrivatePostgres;
/// let server = PrivatePostgres::start().expect("initdb and pg_ctl start");
/// let url = server.url(); // postgres://postgres@127.0.0.1:<port>/postgres
/// server.crash().expect("pg_ctl stop -m immediate");
/// server.start_again().expect("WAL recovery on start");
/// # let _ = url;
/// ```
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// How a private server is configured before its first start (see
/// [`PrivatePostgres::start_with`]).
///
/// ```
/// use eventcore_chaos::private_postgres::ServerSetup;
/// let setup = ServerSetup::new()
///     .tls(b"-----BEGIN CERTIFICATE-----\n...", b"-----BEGIN PRIVATE KEY-----\n...")
///     .hba("hostssl all all 127.0.0.1/32 trust\n");
/// assert_eq!(setup.settings().len(), 3);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServerSetup {
    files: Vec<(String, Vec<u8>)>,
    settings: Vec<(String, String)>,
    hba: Option<String>,
}

impl ServerSetup {
    /// Nothing beyond the defaults (trust authentication on loopback, no TLS).
    pub fn new() -> Self {
        ServerSetup::default()
    }

    /// Writes `contents` to `name` in the data directory, readable by the
    /// server's user only (as PostgreSQL demands of a private key).
    pub fn file(mut self, name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }

    /// Appends `name = 'value'` to `postgresql.conf`.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Replaces `pg_hba.conf` with `text`. A line for the Unix socket
    /// (`local all all trust`) is added, so that `pg_ctl` can tell that the
    /// server is up.
    pub fn hba(mut self, text: impl Into<String>) -> Self {
        self.hba = Some(text.into());
        self
    }

    /// TLS on (`ssl = on`) with the certificate chain and private key
    /// given in PEM (`server.crt` and `server.key` in the data directory).
    pub fn tls(self, certificate_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.file("server.crt", certificate_pem)
            .file("server.key", key_pem)
            .setting("ssl", "on")
            .setting("ssl_cert_file", "server.crt")
            .setting("ssl_key_file", "server.key")
    }

    /// The `postgresql.conf` settings so far.
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }
}

/// Numbers the directories of one process's servers.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl PrivatePostgres {
    /// Runs `initdb` into a fresh temporary directory and starts the server
    /// on a free loopback port (fsync on, as in production: a crash must
    /// lose nothing that committed).
    ///
    /// # Errors
    ///
    /// When the binaries are missing or `initdb`/`pg_ctl` fail.
    pub fn start() -> Result<Self, PrivatePostgresError> {
        PrivatePostgres::start_with(&ServerSetup::new())
    }

    /// [`PrivatePostgres::start`], with the files, settings and
    /// `pg_hba.conf` of `setup` in place before the server first starts.
    ///
    /// # Errors
    ///
    /// As [`PrivatePostgres::start`], and when a file cannot be written.
    pub fn start_with(setup: &ServerSetup) -> Result<Self, PrivatePostgresError> {
        let bin = binaries();
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(format!(
            "eventcore-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let server = PrivatePostgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            server.run("chown", &["-R", "postgres:postgres", &server.dir_str()], false)?;
        }
        let data = server.data_str();
        server.run_pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-instructions",
                "-E",
                "UTF8",
            ],
        )?;
        server.configure(setup)?;
        server.start_again()?;
        Ok(server)
    }

    /// Writes `setup` into the fresh data directory.
    fn configure(&self, setup: &ServerSetup) -> Result<(), PrivatePostgresError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let data = self.dir.join("data");
        for (name, contents) in &setup.files {
            let path = data.join(name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(contents)?;
            if self.as_postgres {
                self.run("chown", &["postgres:postgres", &path.to_string_lossy()], false)?;
            }
        }
        if !setup.settings.is_empty() {
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))?;
            writeln!(conf, "\n# ServerSetup")?;
            for (name, value) in &setup.settings {
                writeln!(conf, "{name} = '{}'", value.replace('\'', "''"))?;
            }
        }
        if let Some(hba) = &setup.hba {
            std::fs::write(data.join("pg_hba.conf"), format!("local all all trust\n{hba}\n"))?;
        }
        Ok(())
    }

    /// The connection URL (user `postgres`, database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (after [`PrivatePostgres::crash`] this replays the
    /// WAL: crash recovery) and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// When `pg_ctl start` fails.
    pub fn start_again(&self) -> Result<(), PrivatePostgresError> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on -c max_connections=100",
            self.port,
            self.dir_str()
        );
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        self.run_pg(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.data_str(),
                "-l",
                &log,
                "-o",
                &options,
            ],
        )
        .map(|_| ())
    }

    /// Kills the server without a shutdown checkpoint (`pg_ctl stop -m
    /// immediate`): every connection is cut, and the next start recovers
    /// from the WAL, as after a power loss of the server process.
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` fails.
    pub fn crash(&self) -> Result<(), PrivatePostgresError> {
        self.run_pg("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &self.data_str()])
            .map(|_| ())
    }

    /// A clean restart (`pg_ctl restart -m fast`): connections are closed,
    /// a shutdown checkpoint is written, the server starts again.
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` or the start fail.
    pub fn restart(&self) -> Result<(), PrivatePostgresError> {
        self.run_pg("pg_ctl", &["stop", "-w", "-m", "fast", "-D", &self.data_str()])?;
        self.start_again()
    }

    /// The tail of the server's log (for a failure report).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn data_str(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn dir_str(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    fn run_pg(&self, program: &str, args: &[&str]) -> Result<Output, PrivatePostgresError> {
        let path = self.bin.join(program);
        let path = if path.exists() {
            path.to_string_lossy().into_owned()
        } else {
            program.to_owned()
        };
        self.run(&path, args, self.as_postgres)
    }

    fn run(&self, program: &str, args: &[&str], as_postgres: bool) -> Result<Output, PrivatePostgresError> {
        let mut command = if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        };
        command.args(args).current_dir(&self.dir);
        let output = command.output().map_err(|source| PrivatePostgresError::Spawn {
            program: program.to_owned(),
            source,
        })?;
        if output.status.success() {
            return Ok(output);
        }
        Err(PrivatePostgresError::Failed {
            program: program.to_owned(),
            args: args.join(" "),
            status: output.status.to_string(),
            stderr: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            ),
        })
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run_pg("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &self.data_str()]);
        std::thread::sleep(Duration::from_millis(50));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the PostgreSQL programs are.
fn binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("EVENTCORE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|v| v.parse::<u32>().ok()))
        .max();
    match newest {
        Some(version) => root.join(version.to_string()).join("bin"),
        None => PathBuf::new(),
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A loopback port nobody listens on (bound, then released).
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
