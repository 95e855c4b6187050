//! A reader's settings, and the device its bytes come from.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::Codec;
use super::protocols::{self, Protocol};
use super::{keyboard, pcsc};
use crate::tag::{IdFormat, Normalisation, TagFormat};
use crate::visit::Direction;

/// One `[[readers]]` entry.
#[derive(Clone, Debug)]
pub struct ReaderConfig {
    pub name: String,
    pub driver: Driver,
    pub direction: Direction,
    pub debounce: Duration,
    pub id_format: IdFormat,
    pub normalisation: Normalisation,
    pub egym_tag_format: Option<TagFormat>,
}

/// How a reader is reached, with the settings of that kind of reader.
#[derive(Clone, Debug)]
pub enum Driver {
    Serial {
        path: PathBuf,
        baud: u32,
        protocol: &'static Protocol,
    },
    /// A keyboard-wedge reader's evdev node.
    Keyboard { path: PathBuf },
    /// A PC/SC reader through pcscd: the first whose name holds `reader`, or the first found.
    Pcsc { reader: Option<String> },
    /// This process's standard input, read as lines.
    Stdin,
}

impl Driver {
    /// Its name in `readers[].driver`.
    pub fn name(&self) -> &'static str {
        match self {
            Driver::Serial { .. } => "serial",
            Driver::Keyboard { .. } => "keyboard",
            Driver::Pcsc { .. } => "pcsc",
            Driver::Stdin => "stdin",
        }
    }
}

/// Where a reader's bytes come from.
pub enum Source {
    Serial {
        path: PathBuf,
        baud: u32,
    },
    /// A PC/SC reader through pcscd: the first whose name holds `name`, or the first found.
    Pcsc {
        name: Option<String>,
    },
    /// An evdev keyboard (a keyboard-wedge reader), grabbed.
    Keyboard {
        path: PathBuf,
    },
    /// This process's standard input (line protocol); ends at end of input.
    Stdin,
    /// Any byte stream (line protocol), e.g. the demo's simulated reader; ends at end of input.
    Stream(Box<dyn AsyncRead + Send + Unpin>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Serial { path, baud } => write!(f, "Serial({}, {baud})", path.display()),
            Source::Pcsc { name } => write!(f, "Pcsc({name:?})"),
            Source::Keyboard { path } => write!(f, "Keyboard({})", path.display()),
            Source::Stdin => write!(f, "Stdin"),
            Source::Stream(_) => write!(f, "Stream"),
        }
    }
}

impl Source {
    pub fn for_config(config: &ReaderConfig) -> Source {
        match &config.driver {
            Driver::Serial { path, baud, .. } => Source::Serial {
                path: path.clone(),
                baud: *baud,
            },
            Driver::Keyboard { path } => Source::Keyboard { path: path.clone() },
            Driver::Pcsc { reader } => Source::Pcsc {
                name: reader.clone(),
            },
            Driver::Stdin => Source::Stdin,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Source::Serial { path, .. } | Source::Keyboard { path } => path.display().to_string(),
            Source::Pcsc { name: Some(name) } => format!("PC/SC reader matching {name:?}"),
            Source::Pcsc { name: None } => "the first PC/SC reader".into(),
            Source::Stdin => "standard input".into(),
            Source::Stream(_) => "simulated reader".into(),
        }
    }
}

/// Why a `stdin` reader could not read this process's standard input, if it could not: there is
/// none, or it is `/dev/null` (as for a service systemd starts), which ends at once.
pub fn stdin_problem() -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `stat` for descriptor 0 and returns 0, else leaves it unset and
    // returns -1; it is read only on success.
    let stat = unsafe {
        if libc::fstat(0, stat.as_mut_ptr()) != 0 {
            return Some("this process has no standard input".into());
        }
        stat.assume_init()
    };
    let null = std::fs::metadata("/dev/null").ok()?;
    let is_null = stat.st_mode & libc::S_IFMT == libc::S_IFCHR
        && null.file_type().is_char_device()
        && stat.st_rdev == null.rdev();
    is_null.then(|| {
        "standard input is /dev/null (as for a service systemd starts): a `stdin` reader reads \
         ids typed at a terminal, for trying gym-checkin out; use driver = \"serial\", \
         \"keyboard\" or \"pcsc\" for a reader"
            .into()
    })
}

/// An open reader: bytes come in, and requests go out to readers the host must ask.
pub trait Port: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Port for T {}

pub(super) type Device = Box<dyn Port>;

/// A source that only reads: what is written to it is dropped.
fn read_only(source: impl AsyncRead + Send + Unpin + 'static) -> Device {
    Box::new(tokio::io::join(source, tokio::io::sink()))
}

/// Opens a reader's device once and closes it again: whether it can be opened now (a serial
/// reader is opened exclusively, so not while the service has it).
pub fn try_open(config: &ReaderConfig) -> std::io::Result<()> {
    match Source::for_config(config) {
        #[cfg(feature = "pcsc")]
        Source::Pcsc { name } => pcsc::PcscDevice::check(name.as_deref()).map(drop),
        mut source => open_now(&mut source).map(drop),
    }
}

pub(super) async fn open(source: &mut Source) -> std::io::Result<Device> {
    match source {
        #[cfg(feature = "pcsc")]
        Source::Pcsc { name } => Ok(Box::new(pcsc::PcscDevice::open(name.clone()).await?)),
        source => open_now(source),
    }
}

fn open_now(source: &mut Source) -> std::io::Result<Device> {
    match source {
        Source::Serial { path, baud } => {
            let port = tokio_serial::new(path.to_string_lossy(), *baud)
                .data_bits(tokio_serial::DataBits::Eight)
                .parity(tokio_serial::Parity::None)
                .stop_bits(tokio_serial::StopBits::One)
                .flow_control(tokio_serial::FlowControl::None);
            let stream = tokio_serial::SerialStream::open(&port).map_err(|e| {
                match std::fs::metadata(&*path) {
                    // Opening a file or a directory as a serial port fails with a bare ENOTTY:
                    // say what the path is instead.
                    Ok(meta)
                        if !std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()) =>
                    {
                        std::io::Error::other(format!(
                            "{} is {}, not a serial device",
                            path.display(),
                            crate::console::file_type_name(&meta.file_type())
                        ))
                    }
                    _ => std::io::Error::other(e),
                }
            })?;
            // What sat in the port's buffer before it was opened (left by `listen`, or noise
            // from the time nobody read) is no tap: only what is read from now on counts.
            tokio_serial::SerialPort::clear(&stream, tokio_serial::ClearBuffer::Input)
                .map_err(std::io::Error::other)?;
            Ok(Box::new(stream))
        }
        Source::Keyboard { path } => Ok(read_only(keyboard::KeyboardDevice::open(path)?)),
        // With PC/SC support, `open` opens these.
        Source::Pcsc { .. } => Err(std::io::Error::other(NO_PCSC)),
        Source::Stdin => Ok(read_only(tokio::io::stdin())),
        Source::Stream(stream) => {
            let stream = std::mem::replace(stream, Box::new(tokio::io::empty()));
            Ok(read_only(stream))
        }
    }
}

/// Said when a PC/SC reader is configured in a build without PC/SC support.
pub const NO_PCSC: &str = "this build of gym-checkin has no PC/SC support: install the \
    gym-checkin package, or build with `cargo build --release --features pcsc` (needs \
    libpcsclite-dev)";

/// The codec a reader's frames come from.
pub fn new_codec(driver: &Driver) -> Box<dyn Codec> {
    match driver {
        Driver::Serial { protocol, .. } => (protocol.new_codec)(),
        Driver::Pcsc { .. } => Box::new(pcsc::PcscCodec::default()),
        Driver::Stdin | Driver::Keyboard { .. } => (protocols::protocol("line")
            .expect("the line protocol exists")
            .new_codec)(),
    }
}
