//! A slow disk without device-mapper (`dm-delay` is not available on the
//! test machines) and without FUSE (`/dev/fuse` exists but no `fusermount`):
//! an ext4 file system on a loop device of the case's own, and a cgroup
//! (v1 `blkio`) whose members' I/O to that device is throttled with
//! `blkio.throttle.{read,write}_iops_device`. The throttle applies to the
//! I/O a process submits itself (`fsync`, direct and synchronous writes,
//! reads that miss the page cache), not to the kernel's background
//! write-back of dirty pages: so SQLite with `synchronous=FULL` (a sync per
//! commit) slows down in proportion, with the default `NORMAL` only its WAL
//! checkpoints' syncs do.
//!
//! Needs root, `losetup`, `mkfs.ext4`, `mount` and the `blkio` controller
//! mounted at `/sys/fs/cgroup/blkio`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

const BLKIO: &str = "/sys/fs/cgroup/blkio";

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether a throttled loop device can be made here.
#[must_use]
pub fn available() -> bool {
    Path::new(BLKIO)
        .join("blkio.throttle.write_iops_device")
        .exists()
        && Command::new("losetup")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        && Command::new("mkfs.ext4")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// An ext4 file system on a loop device, mounted in a temporary directory,
/// with a cgroup that throttles its members' I/O to the device. Unmounted,
/// detached and removed when dropped.
#[derive(Debug)]
pub struct SlowDisk {
    root: tempfile::TempDir,
    device: String,
    major_minor: String,
    cgroup: PathBuf,
}

impl SlowDisk {
    /// Makes a file system of `mib` MiB.
    ///
    /// # Errors
    /// When a step fails (not root, no loop device free, ...).
    pub fn new(mib: u64) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("orx-chaos-disk")
            .tempdir_in("/tmp")?;
        let image = root.path().join("image");
        std::fs::File::create(&image)?.set_len(mib * 1024 * 1024)?;
        let image_str = image.display().to_string();
        run("mkfs.ext4", &["-q", "-F", &image_str])?;
        let device = run("losetup", &["-f", "--show", &image_str])?;
        let cgroup = Path::new(BLKIO).join(format!("orxchaos{:08x}", rand::random::<u32>()));
        let mut disk = Self {
            device: device.clone(),
            major_minor: String::new(),
            cgroup: cgroup.clone(),
            root,
        };
        disk.major_minor = run("lsblk", &["-dno", "MAJ:MIN", &device])?.replace(' ', "");
        let mount = disk.mount_point();
        std::fs::create_dir_all(&mount)?;
        run("mount", &[&device, &mount.display().to_string()])?;
        std::fs::create_dir(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
        Ok(disk)
    }

    fn mount_point(&self) -> PathBuf {
        self.root.path().join("mnt")
    }

    /// The mounted file system's root.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.mount_point()
    }

    /// Puts process `pid` in the throttled cgroup.
    ///
    /// # Errors
    /// When the cgroup refuses it.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        std::fs::write(self.cgroup.join("cgroup.procs"), pid.to_string())?;
        Ok(())
    }

    /// Limits the members' reads and writes to the device to `iops` each
    /// (0: no limit).
    ///
    /// # Errors
    /// When the cgroup refuses it.
    pub fn throttle(&self, iops: u64) -> anyhow::Result<()> {
        for file in [
            "blkio.throttle.write_iops_device",
            "blkio.throttle.read_iops_device",
        ] {
            std::fs::write(
                self.cgroup.join(file),
                format!("{} {iops}", self.major_minor),
            )?;
        }
        Ok(())
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.cgroup);
        let mount = self.mount_point().display().to_string();
        // A store's connections may close a moment after it is dropped: a
        // lazy unmount then detaches the file system at once and releases it
        // when the last file closes (the loop device is cleared with it).
        if run("umount", &[&mount]).is_err() {
            let _ = run("umount", &["-l", &mount]);
        }
        let _ = run("losetup", &["-d", &self.device]);
    }
}
