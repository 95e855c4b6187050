//! `check-config`'s look at the readers' devices as they are now.

use crate::reader::{Driver, ReaderConfig};

/// Problems with the readers' devices as they are now, for `check-config`, each with its key
/// (`readers` as the file numbers them): a serial reader's path that is there but is no
/// character device (a file, a directory), and a keyboard reader's path that is not an input
/// event node, or that the service (user `gym-checkin`, groups `dialout` and `input`) could not
/// open. A device not plugged in is no problem: the service waits for it.
pub(super) fn check_devices(readers: &[(usize, ReaderConfig)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, reader) in readers {
        match &reader.driver {
            Driver::Serial { path, .. } => {
                if let Ok(meta) = std::fs::metadata(path)
                    && !std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type())
                {
                    problems.push(format!(
                        "readers[{i}].path: {} is {}, not a serial device: name the reader's \
                         device, e.g. /dev/serial/by-id/usb-... (see `ls -l /dev/serial/by-id/`)",
                        path.display(),
                        crate::console::file_type_name(&meta.file_type())
                    ));
                }
            }
            Driver::Keyboard { path } => {
                if let Ok(meta) = std::fs::metadata(path)
                    && let Err(problem) = input_device_access(&meta, group_id("input"))
                {
                    problems.push(format!("readers[{i}].path: {}: {problem}", path.display()));
                }
            }
            Driver::Pcsc { .. } | Driver::Stdin => {}
        }
    }
    problems
}

/// The major device number of Linux input devices (`/dev/input/event*`).
const INPUT_MAJOR: u32 = 13;

/// Whether a keyboard reader's device is an input event node the service's group `input`
/// (gid `input_gid`) may read.
fn input_device_access(meta: &std::fs::Metadata, input_gid: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let major = meta
        .file_type()
        .is_char_device()
        .then(|| libc::major(meta.rdev()));
    device_access(major, meta.mode(), meta.uid(), meta.gid(), input_gid)
}

/// [`input_device_access`] on the numbers: the device's major number (`None`: not a character
/// device), mode, owner and group.
pub(super) fn device_access(
    major: Option<u32>,
    mode: u32,
    uid: u32,
    gid: u32,
    input_gid: Option<u32>,
) -> Result<(), String> {
    if major != Some(INPUT_MAJOR) {
        return Err(
            "not an input device; a keyboard-wedge reader is read from its event node, \
                    e.g. /dev/input/by-id/usb-...-event-kbd (see `ls -l /dev/input/by-id/`)"
                .into(),
        );
    }
    let group_reads = input_gid == Some(gid) && mode & 0o040 != 0;
    if group_reads || mode & 0o004 != 0 {
        return Ok(());
    }
    Err(format!(
        "the service cannot open it: it belongs to uid {} gid {} with mode {:o}, and the service \
         reads input devices through the group `input`. Give the device to that group with a udev \
         rule (GROUP=\"input\", MODE=\"0640\"; see 99-gym-checkin.rules.example)",
        uid,
        gid,
        mode & 0o7777
    ))
}

/// The id of a group, by name.
fn group_id(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam takes a NUL-terminated name and returns a pointer to static storage or
    // null; the gid is copied out at once.
    unsafe {
        let group = libc::getgrnam(name.as_ptr());
        (!group.is_null()).then(|| (*group).gr_gid)
    }
}
