//! The container engine the tests talk to: Podman's Docker-compatible API
//! (`podman system service`), rootful, on a Unix socket of the test run's scratch directory.
//!
//! Everything Podman keeps lives under that directory (its own `containers.conf` and
//! `storage.conf`, given by `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF`): image and
//! container storage, run state, file locks, events and network configuration. Nothing under
//! `/etc` is read or changed, and a run neither sees nor disturbs another engine on the machine.
//! No image can be pulled, so [`BASE_TEST_IMAGE`] is imported from a root filesystem made of
//! the statically linked busybox (Debian's `busybox-static`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::resource::{Resource, getrlimit};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The image the container tests create their containers from: busybox as `/bin/sh` and its
/// applets, user `sandbox` (uid and gid 1000) with home `/home/sandbox`, working directory
/// `/workspace`.
pub const BASE_TEST_IMAGE: &str = "localhost/autonoma-sandbox-base:test";

/// What installs everything this module needs on Debian and Ubuntu.
pub const INSTALL_HINT: &str = "apt-get install -y podman runc busybox-static";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Debian's `busybox-static` puts the binary.
const BUSYBOX: &str = "/bin/busybox";
const SANDBOX_UID: u64 = 1000;

/// A running `podman system service`.
pub struct Podman {
    child: tokio::process::Child,
    bin: PathBuf,
    dir: PathBuf,
    /// `unix:///…/podman.sock`, what `DOCKER_HOST` takes.
    pub docker_host: String,
    /// How long importing [`BASE_TEST_IMAGE`] took (zero when it was there already).
    pub image_build: Duration,
    /// How long the service took to answer once started.
    pub startup: Duration,
}

impl Podman {
    /// The `podman` on `PATH`, if any.
    pub fn locate() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("podman"))
            .find(|candidate| candidate.is_file())
    }

    /// Writes the configuration into `scratch/podman`, imports [`BASE_TEST_IMAGE`] when that
    /// storage lacks it, starts the service on `scratch/podman/podman.sock` and waits until it
    /// answers `/_ping`. Its output goes to `service.log` there, shown if it fails to start.
    pub async fn start(bin: PathBuf, scratch: &Path) -> anyhow::Result<Self> {
        let dir = scratch.join("podman");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_config(&dir)?;
        let socket = dir.join("podman.sock");
        let docker_host = format!("unix://{}", socket.display());

        let started = Instant::now();
        let exists = podman(&bin, &dir)
            .args(["image", "exists", BASE_TEST_IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .with_context(|| format!("running {}", bin.display()))?;
        let image_build = if exists.success() {
            Duration::ZERO
        } else {
            build_base_image(&bin, &dir).await?;
            started.elapsed()
        };

        let log_path = dir.join("service.log");
        let log = std::fs::File::create(&log_path).context("creating podman's service.log")?;
        let mut command = std::process::Command::new(&bin);
        command
            .args(["system", "service", "--time=0", &docker_host])
            .envs(config_env(&dir))
            // conmon writes an `oom` marker into its working directory when a container is
            // OOM-killed: keep that out of the checkout.
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing podman's service.log")?)
            .stderr(log)
            // Out of the terminal's process group, so Ctrl-C reaches the launcher, which stops
            // it; if the launcher dies instead, the kernel sends it SIGTERM.
            .process_group(0);
        autonoma_localpg::signal_when_parent_dies(&mut command, Signal::SIGTERM);
        let serving = Instant::now();
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} system service", bin.display()))?;
        let mut podman = Podman {
            child,
            bin,
            dir,
            docker_host,
            image_build,
            startup: Duration::ZERO,
        };

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = podman.child.try_wait()? {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("podman system service exited ({status}) before answering:\n{output}");
            }
            if ping(&socket).await {
                podman.startup = serving.elapsed();
                return Ok(podman);
            }
            if tokio::time::Instant::now() > deadline {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                podman.stop().await;
                bail!(
                    "podman system service did not answer on {} within {}s:\n{output}",
                    socket.display(),
                    START_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes every container the tests left (running ones included, so no `conmon` or
    /// mount outlives the run), then stops the service: SIGTERM, then SIGKILL if it lingers.
    pub async fn stop(mut self) {
        let _ = podman(&self.bin, &self.dir)
            .args(["rm", "--all", "--force", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
            if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// A `podman` command that uses the configuration in `dir`.
fn podman(bin: &Path, dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin);
    command
        .envs(config_env(dir))
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

fn config_env(dir: &Path) -> [(&'static str, PathBuf); 2] {
    [
        ("CONTAINERS_CONF", dir.join("containers.conf")),
        ("CONTAINERS_STORAGE_CONF", dir.join("storage.conf")),
    ]
}

/// `containers.conf` and `storage.conf` keeping all of Podman's state under `dir`.
///
/// runc with the cgroupfs manager (no systemd here). Default ulimits are needed because
/// Podman's own (open files 1048576, which it cannot raise to here without
/// `CAP_SYS_RESOURCE`) make runc fail with "error setting rlimits": containers get this
/// process's hard limit of open files, and at most 32768 processes, the limit Podman sets for
/// itself. File locks instead of the one shared-memory segment every Podman on the machine
/// uses.
fn write_config(dir: &Path) -> anyhow::Result<()> {
    let (_, nofile) = getrlimit(Resource::RLIMIT_NOFILE).context("reading RLIMIT_NOFILE")?;
    let (_, nproc) = getrlimit(Resource::RLIMIT_NPROC).context("reading RLIMIT_NPROC")?;
    let nofile = nofile.min(1_048_576);
    let nproc = nproc.min(32_768);
    let path = |name: &str| toml_string(&dir.join(name));
    let containers = format!(
        "[containers]\n\
         default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
         \n\
         [engine]\n\
         runtime = \"runc\"\n\
         cgroup_manager = \"cgroupfs\"\n\
         lock_type = \"file\"\n\
         events_logger = \"file\"\n\
         events_logfile_path = {events}\n\
         tmp_dir = {tmp}\n\
         \n\
         [network]\n\
         network_config_dir = {network}\n",
        events = path("events.log")?,
        tmp = path("tmp")?,
        network = path("networks")?,
    );
    let storage = format!(
        "[storage]\ndriver = \"overlay\"\ngraphroot = {root}\nrunroot = {run}\n",
        root = path("storage")?,
        run = path("run")?,
    );
    std::fs::write(dir.join("containers.conf"), containers)
        .context("writing podman's containers.conf")?;
    std::fs::write(dir.join("storage.conf"), storage).context("writing podman's storage.conf")?;
    Ok(())
}

/// A path as a TOML basic string (JSON's escapes are TOML's).
fn toml_string(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(serde_json::to_string(text)?)
}

/// Imports [`BASE_TEST_IMAGE`] from a root filesystem tarball made of [`BUSYBOX`].
async fn build_base_image(bin: &Path, dir: &Path) -> anyhow::Result<()> {
    let busybox = Path::new(BUSYBOX);
    let binary = std::fs::read(busybox).map_err(|error| {
        anyhow::anyhow!(
            "{BUSYBOX} ({error}) is needed to build the container test image \
             {BASE_TEST_IMAGE}. Install it with\n\n    apt-get install -y busybox-static\n"
        )
    })?;
    if !is_static_elf(&binary) {
        bail!(
            "{BUSYBOX} is dynamically linked, so it cannot be the only program of the container \
             test image {BASE_TEST_IMAGE}. Install the static one with\n\n    \
             apt-get install -y busybox-static\n"
        );
    }
    let list = tokio::process::Command::new(busybox)
        .arg("--list")
        .output()
        .await
        .context("listing busybox's applets")?;
    if !list.status.success() {
        bail!("{BUSYBOX} --list failed ({})", list.status);
    }
    let applets = String::from_utf8_lossy(&list.stdout);
    let applets: Vec<&str> = applets
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "busybox" && !name.contains('/'))
        .collect();
    let tarball = dir.join("base-image.tar");
    std::fs::write(&tarball, rootfs_tar(&binary, &applets)?)
        .context("writing the base image's root filesystem")?;

    let output = podman(bin, dir)
        .arg("import")
        .arg("--quiet")
        .args(["--change", "ENV PATH=/bin"])
        .args(["--change", "ENV HOME=/home/sandbox"])
        .args(["--change", "USER 1000:1000"])
        .args(["--change", "WORKDIR /workspace"])
        .args(["--change", r#"CMD ["/bin/sh"]"#])
        .arg(&tarball)
        .arg(BASE_TEST_IMAGE)
        .output()
        .await
        .context("running podman import")?;
    if !output.status.success() {
        bail!(
            "podman import of {BASE_TEST_IMAGE} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The base image's root filesystem: `/bin/busybox` with a symbolic link per applet, `root` and
/// `sandbox` in `/etc/passwd` and `/etc/group`, and the directories a container expects.
fn rootfs_tar(busybox: &[u8], applets: &[&str]) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let dirs = [
        ("bin", 0o755, 0),
        ("dev", 0o755, 0),
        ("etc", 0o755, 0),
        ("home", 0o755, 0),
        ("home/sandbox", 0o755, SANDBOX_UID),
        ("proc", 0o755, 0),
        ("root", 0o700, 0),
        ("run", 0o755, 0),
        ("sys", 0o755, 0),
        ("tmp", 0o1777, 0),
        ("var", 0o755, 0),
        ("var/tmp", 0o1777, 0),
        ("workspace", 0o755, SANDBOX_UID),
    ];
    for (path, mode, owner) in dirs {
        let mut header = tar_header(tar::EntryType::Directory, mode, owner);
        tar.append_data(&mut header, path, std::io::empty())?;
    }
    let mut header = tar_header(tar::EntryType::Regular, 0o755, 0);
    header.set_size(busybox.len() as u64);
    tar.append_data(&mut header, "bin/busybox", busybox)?;
    for applet in applets {
        let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
    }
    let files: [(&str, &[u8]); 3] = [
        (
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\n",
        ),
        ("etc/group", b"root:x:0:\nsandbox:x:1000:\n"),
        ("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n"),
    ];
    for (path, content) in files {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, 0);
        header.set_size(content.len() as u64);
        tar.append_data(&mut header, path, content)?;
    }
    Ok(tar.into_inner()?)
}

fn tar_header(kind: tar::EntryType, mode: u32, owner: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(owner);
    header.set_gid(owner);
    header.set_mtime(0);
    header.set_size(0);
    header
}

/// Whether `binary` is a 64-bit little-endian ELF without a program interpreter (a dynamic
/// linker), i.e. statically linked.
fn is_static_elf(binary: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        binary
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        binary
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        binary
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if binary.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).all(|index| {
        let at = phoff + index * usize::from(phentsize);
        u32_at(at).is_some_and(|kind| kind != PT_INTERP)
    })
}

/// Whether the Docker API on `socket` answers `GET /_ping` with 200.
async fn ping(socket: &Path) -> bool {
    let attempt = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(
            answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_binaries() {
        if let Ok(busybox) = std::fs::read(BUSYBOX) {
            // Debian's busybox-static; the dynamic `busybox` package puts its binary there too.
            let dynamic = busybox.windows(12).any(|w| w == b"/lib64/ld-li");
            assert_eq!(is_static_elf(&busybox), !dynamic);
        }
        let sh = std::fs::read("/bin/sh").expect("reading /bin/sh");
        assert!(!is_static_elf(&sh), "/bin/sh is dynamically linked");
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn the_root_filesystem_has_busybox_its_applets_and_the_sandbox_user() {
        let tar = rootfs_tar(b"\x7fELF", &["sh", "ls"]).expect("building the tarball");
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("reading the tarball") {
            let mut entry = entry.expect("an entry");
            let path = entry.path().expect("a path").display().to_string();
            let header = entry.header();
            let line = match header.entry_type() {
                tar::EntryType::Symlink => format!(
                    "{path} -> {}",
                    entry
                        .link_name()
                        .expect("a link")
                        .expect("a target")
                        .display()
                ),
                _ => format!(
                    "{path} {:o} {}",
                    header.mode().expect("a mode"),
                    header.uid().expect("a uid")
                ),
            };
            if path == "etc/passwd" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).expect("reading passwd");
                assert!(text.contains("sandbox:x:1000:1000:"), "{text}");
            }
            seen.push(line);
        }
        for expected in [
            "bin/busybox 755 0",
            "bin/sh -> busybox",
            "bin/ls -> busybox",
            "tmp 1777 0",
            "workspace 755 1000",
            "home/sandbox 755 1000",
        ] {
            assert!(
                seen.iter().any(|line| line == expected),
                "{expected} in {seen:?}"
            );
        }
    }
}
