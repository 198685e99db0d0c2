//! Access to the node's filesystem and processes, under a configurable host root.
//!
//! In the DaemonSet the host's `/` is mounted at the host root (e.g. `/host`) and
//! `<root>/proc` shows the host's processes (hostPID). Every path the agent reads from a
//! process's flags is a *host* path and is resolved under the root here, so tests build a
//! fake host in a temporary directory and the same code runs against it.
//!
//! Paths inside a containerized kube-apiserver (a static pod) are assumed to be mounted at
//! the same host path, as kubeadm does; otherwise give the agent `--audit-policy-file`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ). The kernel exports 100 on
/// every architecture Kubernetes supports; reading sysconf(_SC_CLK_TCK) would need libc.
const USER_HZ: u64 = 100;

/// Errors reading and writing the host's files and process table. Reads end up as
/// observations in the NodeReport (their message is what it says); writes fail the
/// enforcement step.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The process table could not be listed.
    #[error("cannot list {}: {source}", dir.display())]
    ListProcesses {
        /// The proc directory under the host root.
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A host file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Host path.
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A kubelet --config-dir (or a directory below it) could not be listed.
    #[error("cannot list kubelet --config-dir {dir}: {source}")]
    ListDropIns {
        /// Host path of the directory.
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// The kubelet's staticPodPath could not be listed.
    #[error("cannot list the kubelet's staticPodPath {dir}: {source}")]
    ListStaticPods {
        /// Host path of the directory.
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// An --apiserver-flags-file Pod manifest without the container to read.
    #[error("the Pod manifest has no {missing}")]
    ApiServerManifest {
        /// What is missing (`spec.containers`, `containers`).
        missing: &'static str,
    },
    /// Writing, syncing or renaming failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Host path.
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Removing a stale file failed.
    #[error("cannot remove {path}: {source}")]
    Remove {
        /// Host path.
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A file's permission bits and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Permission bits (with setuid, setgid and sticky), e.g. 0o600.
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
}

/// The node's filesystem and process table, seen from the agent.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

/// A running process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its PID (in the host's PID namespace).
    pub pid: u32,
    /// Arguments after the program name (and after the subcommand for hyperkube).
    pub args: Vec<String>,
    /// The latest instant it can have started, if /proc says.
    pub started_by: Option<SystemTime>,
}

impl Host {
    /// A host whose `/` is at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The agent-side path of a host path. Relative host paths are taken relative to the
    /// host's `/` (the kubelet and kube-apiserver run from `/`).
    pub fn resolve(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// Every process whose program is one of `names` (`kubelet`, `kube-apiserver`), also
    /// as a hyperkube subcommand, lowest PID (typically the oldest) first.
    pub fn find_processes(&self, names: &[&str]) -> Result<Vec<Process>, HostError> {
        let proc_dir = self.resolve("/proc");
        let entries = fs::read_dir(&proc_dir).map_err(|source| HostError::ListProcesses {
            dir: proc_dir.clone(),
            source,
        })?;
        let mut pids: Vec<u32> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        pids.sort_unstable();
        let mut found = Vec::new();
        for pid in pids {
            // Processes come and go while we look: an unreadable cmdline is skipped.
            let Ok(raw) = fs::read(proc_dir.join(pid.to_string()).join("cmdline")) else {
                continue;
            };
            let Some(args) = match_cmdline(&raw, names) else {
                continue;
            };
            found.push(Process {
                pid,
                args,
                started_by: self.process_started_by(pid),
            });
        }
        Ok(found)
    }

    /// The latest instant a process can have started (see [`started_by`]): a file modified
    /// after it was certainly modified after the process started.
    pub fn process_started_by(&self, pid: u32) -> Option<SystemTime> {
        let stat = fs::read_to_string(self.resolve(&format!("/proc/{pid}/stat"))).ok()?;
        started_by(&stat, self.booted_by()?)
    }

    /// The latest instant the host can have booted: from /proc/uptime read against the
    /// clock (to 10 ms) or, where that is missing, from /proc/stat's whole-second btime.
    fn booted_by(&self) -> Option<SystemTime> {
        let from_uptime = fs::read_to_string(self.resolve("/proc/uptime"))
            .ok()
            .and_then(|uptime| booted_by_uptime(&uptime, SystemTime::now()));
        from_uptime.or_else(|| {
            let proc_stat = fs::read_to_string(self.resolve("/proc/stat")).ok()?;
            booted_by_btime(&proc_stat)
        })
    }

    /// A host file's text; the error names the host path.
    pub fn read_text(&self, host_path: &str) -> Result<String, HostError> {
        fs::read_to_string(self.resolve(host_path)).map_err(|source| HostError::Read {
            path: host_path.to_owned(),
            source,
        })
    }

    /// A host file's permission bits, owner and group; None when it does not exist.
    pub fn stat(&self, host_path: &str) -> Result<Option<FileStat>, HostError> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(self.resolve(host_path)) {
            Ok(meta) => Ok(Some(FileStat {
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            })),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(HostError::Read {
                path: host_path.to_owned(),
                source,
            }),
        }
    }

    /// The effective user and group a process runs as (the second field of the `Uid:` and
    /// `Gid:` lines of /proc/<pid>/status), if /proc says.
    pub fn process_owner(&self, pid: u32) -> Option<(u32, u32)> {
        let status = fs::read_to_string(self.resolve(&format!("/proc/{pid}/status"))).ok()?;
        let effective = |key: &str| -> Option<u32> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((effective("Uid:")?, effective("Gid:")?))
    }

    /// A host file's modification time.
    pub fn mtime(&self, host_path: &str) -> Option<SystemTime> {
        fs::metadata(self.resolve(host_path))
            .and_then(|m| m.modified())
            .ok()
    }

    /// The latest modification time of a directory and the directories below it: the kernel
    /// sets it when an entry is added, removed or renamed, so it moves when a drop-in
    /// appears, disappears, or is moved in with an old modification time of its own.
    pub fn latest_dir_change(&self, host_dir: &str) -> Option<SystemTime> {
        fn walk(dir: &Path) -> Option<SystemTime> {
            let own = fs::metadata(dir).and_then(|m| m.modified()).ok()?;
            let below = fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| walk(&e.path()));
            Some(below.fold(own, SystemTime::max))
        }
        walk(&self.resolve(host_dir))
    }

    /// The kubelet's drop-ins: every file under `dir` (recursively, as the kubelet's
    /// filepath.WalkDir) whose name ends in `.conf`, as (path relative to `dir`, host path).
    pub fn list_drop_ins(&self, dir: &str) -> Result<Vec<(String, String)>, HostError> {
        let mut found = Vec::new();
        self.walk(dir, "", &mut found)?;
        Ok(found)
    }

    fn walk(
        &self,
        dir: &str,
        relative: &str,
        found: &mut Vec<(String, String)>,
    ) -> Result<(), HostError> {
        let host_dir = if relative.is_empty() {
            dir.to_owned()
        } else {
            format!("{}/{relative}", dir.trim_end_matches('/'))
        };
        let entries =
            fs::read_dir(self.resolve(&host_dir)).map_err(|source| HostError::ListDropIns {
                dir: host_dir.clone(),
                source,
            })?;
        let mut names: Vec<(String, bool)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let is_dir = e.file_type().ok()?.is_dir();
                Some((e.file_name().to_str()?.to_owned(), is_dir))
            })
            .collect();
        names.sort();
        for (name, is_dir) in names {
            let rel = if relative.is_empty() {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            if is_dir {
                self.walk(dir, &rel, found)?;
            } else if name.ends_with(".conf") {
                found.push((rel.clone(), format!("{}/{rel}", dir.trim_end_matches('/'))));
            }
        }
        Ok(())
    }

    /// The static Pod manifests the kubelet reads from its staticPodPath (pkg/kubelet/config
    /// file.go): the path itself when it is a file; in a directory, every entry whose name
    /// does not start with a dot and that is a regular file after following symlinks (no
    /// recursion), sorted. A path that does not exist holds none (the kubelet ignores it).
    pub fn list_static_pod_manifests(&self, host_path: &str) -> Result<Vec<String>, HostError> {
        let list_error = |source| HostError::ListStaticPods {
            dir: host_path.to_owned(),
            source,
        };
        let path = self.resolve(host_path);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(list_error(err)),
        };
        if meta.is_file() {
            return Ok(vec![host_path.to_owned()]);
        }
        let mut names: Vec<String> = fs::read_dir(&path)
            .map_err(list_error)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|name| !name.starts_with('.'))
            .filter(|name| fs::metadata(path.join(name)).is_ok_and(|m| m.is_file()))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|name| format!("{}/{name}", host_path.trim_end_matches('/')))
            .collect())
    }

    /// Writes a host file atomically: a temporary file in the same directory, synced, then
    /// renamed over the target, so the kubelet or kube-apiserver never reads half a file.
    /// An existing file's permissions are kept; a new file is 0600 (root reads it).
    pub fn write_atomic(&self, host_path: &str, content: &str) -> Result<(), HostError> {
        let target = self.resolve(host_path);
        let err = |source| HostError::Write {
            path: host_path.to_owned(),
            source,
        };
        let dir = target.parent().unwrap_or(Path::new("/"));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.kube-baseline.tmp"));
        let mode = fs::metadata(&target)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o600);
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)?;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(content.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temp, &target)?;
            if let Ok(dir) = fs::File::open(dir) {
                // Persist the rename; failing to sync a directory is not worth an error.
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map_err(err)
    }

    /// Removes a host file (a drop-in no baseline wants any more).
    pub fn remove(&self, host_path: &str) -> Result<(), HostError> {
        fs::remove_file(self.resolve(host_path)).map_err(|source| HostError::Remove {
            path: host_path.to_owned(),
            source,
        })
    }
}

/// The arguments of a process whose program (or hyperkube subcommand) is one of `names`.
fn match_cmdline(raw: &[u8], names: &[&str]) -> Option<Vec<String>> {
    let mut argv: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if argv.last().is_some_and(String::is_empty) {
        argv.pop();
    }
    let program = argv.first()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    if names.contains(&base) {
        return Some(argv.split_off(1));
    }
    if base == "hyperkube" && argv.get(1).is_some_and(|sub| names.contains(&sub.as_str())) {
        return Some(argv.split_off(2));
    }
    None
}

/// The latest instant a process can have started, given the latest instant the host can
/// have booted. Field 22 of /proc/<pid>/stat is its start in clock ticks since boot,
/// truncated to a tick, so the process started before boot + (ticks + 1) / USER_HZ. Using
/// the latest instant means a file written just before the start (config tools write a
/// file and restart the component within a second) is never taken for a later change; a
/// change within that uncertainty after the start goes unseen until the next one.
fn started_by(stat: &str, booted_by: SystemTime) -> Option<SystemTime> {
    // The command name (field 2) may contain spaces and parentheses: fields after it
    // start after the last ')'. starttime is field 22, i.e. the 20th after the ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let millis = ticks.checked_add(1)?.checked_mul(1000)? / USER_HZ;
    booted_by.checked_add(Duration::from_millis(millis))
}

/// The latest boot instant from /proc/uptime's first field (seconds since boot, truncated
/// to 10 ms) read just before `now`: the host booted at or before `now - uptime`.
fn booted_by_uptime(uptime: &str, now: SystemTime) -> Option<SystemTime> {
    let (seconds, hundredths) = uptime.split_whitespace().next()?.split_once('.')?;
    let seconds: u64 = seconds.parse().ok()?;
    let hundredths: u64 = hundredths.get(..2)?.parse().ok()?;
    now.checked_sub(Duration::from_millis(
        seconds.checked_mul(1000)?.checked_add(hundredths * 10)?,
    ))
}

/// The latest boot instant from /proc/stat's btime, the boot in whole seconds (truncated):
/// the host booted before btime + 1 s.
fn booted_by_btime(proc_stat: &str) -> Option<SystemTime> {
    let btime: u64 = proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(btime.checked_add(1)?))
}

/// kube-apiserver arguments from a file given with --apiserver-flags-file: its static Pod
/// manifest (the kube-apiserver container's command and args), or plain text with one
/// argument per line or separated by spaces (a leading program name is dropped).
pub fn apiserver_args_from_file(text: &str) -> Result<Vec<String>, HostError> {
    if let Ok(Value::Object(manifest)) = serde_saphyr::from_str::<Value>(text)
        && manifest.get("kind").and_then(Value::as_str) == Some("Pod")
    {
        let containers = manifest
            .get("spec")
            .and_then(|s| s.get("containers"))
            .and_then(Value::as_array)
            .ok_or(HostError::ApiServerManifest {
                missing: "spec.containers",
            })?;
        let container = containers
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some("kube-apiserver"))
            .or_else(|| containers.first())
            .ok_or(HostError::ApiServerManifest {
                missing: "containers",
            })?;
        let strings = |key: &str| -> Vec<String> {
            container
                .get(key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut args = strings("command");
        if args.first().is_some_and(|a| !a.starts_with('-')) {
            args.remove(0);
        }
        args.extend(strings("args"));
        return Ok(args);
    }
    let mut args: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if args.first().is_some_and(|a| !a.starts_with('-')) {
        args.remove(0);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BTIME: u64 = 1_700_000_000;

    fn at_millis(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn started_by_reads_field_22_after_the_command_name_and_adds_one_tick() {
        let stat = "4242 (kube api (x)) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 12 0 12345 1000 200";
        // 12,345 ticks = 123.45 s, truncated: started before 123.46 s after boot.
        assert_eq!(
            started_by(stat, at_millis(BTIME * 1000)),
            Some(at_millis(BTIME * 1000 + 123_460))
        );
        assert_eq!(started_by("garbage", at_millis(0)), None);
        assert_eq!(started_by("1 (x) S 1", at_millis(0)), None);
    }

    #[test]
    fn btime_is_whole_seconds_so_the_boot_is_before_the_next_second() {
        let proc_stat = format!("cpu 1 2 3\nbtime {BTIME}\nprocesses 9\n");
        assert_eq!(
            booted_by_btime(&proc_stat),
            Some(at_millis((BTIME + 1) * 1000))
        );
        assert_eq!(booted_by_btime("cpu 1 2 3\n"), None);
        assert_eq!(booted_by_btime("btime soon\n"), None);
    }

    #[test]
    fn uptime_puts_the_boot_at_now_minus_uptime() {
        let now = at_millis(BTIME * 1000 + 5_000_000);
        assert_eq!(
            booted_by_uptime("4876.54 9000.01\n", now),
            Some(at_millis(BTIME * 1000 + 5_000_000 - 4_876_540))
        );
        assert_eq!(booted_by_uptime("", now), None);
        assert_eq!(booted_by_uptime("12 3", now), None);
        assert_eq!(booted_by_uptime("x.5 3", now), None);
    }

    #[test]
    fn cmdline_matches_program_basename_and_hyperkube() {
        let raw = b"/usr/bin/kubelet\0--config=/var/lib/kubelet/config.yaml\0";
        assert_eq!(
            match_cmdline(raw, &["kubelet"]),
            Some(vec!["--config=/var/lib/kubelet/config.yaml".to_owned()])
        );
        let raw = b"/hyperkube\0kubelet\0--v=2\0";
        assert_eq!(
            match_cmdline(raw, &["kubelet"]),
            Some(vec!["--v=2".to_owned()])
        );
        assert_eq!(match_cmdline(b"/bin/kubeletctl\0", &["kubelet"]), None);
        assert_eq!(match_cmdline(b"", &["kubelet"]), None);
    }

    #[test]
    fn apiserver_args_come_from_a_static_pod_or_plain_text() {
        let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver}\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --authorization-mode=Node,RBAC\n    - --anonymous-auth=false\n";
        assert_eq!(
            apiserver_args_from_file(manifest).unwrap(),
            ["--authorization-mode=Node,RBAC", "--anonymous-auth=false"]
        );
        assert_eq!(
            apiserver_args_from_file("kube-apiserver --a=1\n--b 2\n").unwrap(),
            ["--a=1", "--b", "2"]
        );
    }
}
