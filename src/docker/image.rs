//! Images: whether one is here, pulling one with progress, and building one from a directory.
//! A build context is packed into a tar archive on a blocking thread and streamed to the engine
//! as it is written (64 KiB chunks through a small channel), so a large context never sits in
//! memory whole.

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Write},
    path::{Path, PathBuf},
};

use bollard::{
    Docker,
    query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder},
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::docker::{Doing, EngineError, describe};

const CHUNK: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot pack the build context {dir}: {source}")]
    Pack { dir: PathBuf, source: io::Error },
    #[error("{dir} has no {dockerfile} to build from")]
    NoDockerfile { dir: PathBuf, dockerfile: String },
    #[error("building {tag} failed at `{step}`: {message}")]
    Build {
        tag: String,
        step: String,
        message: String,
    },
}

/// True when image `reference` is in the engine's store.
pub async fn exists(docker: &Docker, reference: &str) -> Result<bool, EngineError> {
    match docker.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(error) if crate::docker::is_status(&error, 404) => Ok(false),
        Err(error) => Err(error).doing(format!("inspect image {reference}")),
    }
}

/// The id of image `reference`, if it is here.
pub async fn id(docker: &Docker, reference: &str) -> Result<Option<String>, EngineError> {
    match docker.inspect_image(reference).await {
        Ok(image) => Ok(image.id),
        Err(error) if crate::docker::is_status(&error, 404) => Ok(None),
        Err(error) => Err(error).doing(format!("inspect image {reference}")),
    }
}

/// `name:tag` split for the engine; a reference without a tag means `latest`, never every tag.
fn split_reference(reference: &str) -> (&str, &str) {
    if reference.contains('@') {
        return (reference, "");
    }
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            &reference[..name_start + i],
            &reference[name_start + i + 1..],
        ),
        None => (reference, "latest"),
    }
}

/// Pulls `reference`, calling `progress` with a line such as `pulling x: 12.0 of 40.1 MB`.
/// Returns the image id.
pub async fn pull(
    docker: &Docker,
    reference: &str,
    progress: &dyn Fn(&str),
) -> Result<String, EngineError> {
    let (name, tag) = split_reference(reference);
    let options = CreateImageOptionsBuilder::default()
        .from_image(name)
        .tag(tag)
        .build();
    let action = format!("pull {reference}");
    let mut layers: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(info) = stream.next().await {
        let info = info.doing(&action)?;
        if let (Some(layer), Some(detail)) = (info.id, info.progress_detail)
            && info.status.as_deref() == Some("Downloading")
        {
            layers.insert(
                layer,
                (detail.current.unwrap_or(0), detail.total.unwrap_or(0)),
            );
            let (done, total) = layers
                .values()
                .fold((0, 0), |(d, t), (c, n)| (d + c, t + n));
            progress(&format!(
                "pulling {reference}: {:.1} of {:.1} MB",
                done as f64 / 1e6,
                total as f64 / 1e6
            ));
        }
    }
    id(docker, reference).await?.ok_or_else(|| EngineError {
        action,
        source: bollard::errors::Error::DockerStreamError {
            error: "the engine reported success but has no such image".into(),
        },
    })
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub dir: PathBuf,
    pub tag: String,
    /// Relative to `dir`; `Dockerfile` when `None`.
    pub dockerfile: Option<String>,
    pub args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    /// Files from elsewhere added to the context: (name in the context, path on the host).
    pub files: Vec<(String, PathBuf)>,
}

/// Builds an image from `request.dir` (the whole directory is the context) and tags it.
/// `progress` hears each step as it starts. Returns the image id.
pub async fn build(
    docker: &Docker,
    request: &BuildRequest,
    progress: &dyn Fn(&str),
) -> Result<String, ImageError> {
    let dockerfile = request.dockerfile.as_deref().unwrap_or("Dockerfile");
    if !request.dir.join(dockerfile).is_file() {
        return Err(ImageError::NoDockerfile {
            dir: request.dir.clone(),
            dockerfile: dockerfile.to_string(),
        });
    }
    if request.dir.join(".dockerignore").exists() {
        tracing::warn!(
            "{}/.dockerignore is not read: the whole directory is sent",
            request.dir.display()
        );
    }
    let (sender, mut receiver) = mpsc::channel::<Bytes>(4);
    let (dir, files) = (request.dir.clone(), request.files.clone());
    let packer = tokio::task::spawn_blocking(move || pack(&dir, &files, sender));
    let body = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .t(&request.tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&request.args)
        .labels(&request.labels)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_stream(body)));
    let mut image_id = None;
    let mut step = String::from("sending the context");
    let mut failure = None;
    while let Some(info) = stream.next().await {
        let info = match info {
            Ok(info) => info,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        if let Some(text) = &info.stream {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                tracing::debug!("build {}: {line}", request.tag);
                if line.starts_with("Step ") {
                    step = line.to_string();
                    progress(&format!("building {}: {line}", request.tag));
                }
            }
        }
        if let Some(aux) = info.aux {
            image_id = aux.id.or(image_id);
        }
    }
    let packed = packer.await.map_err(|e| ImageError::Pack {
        dir: request.dir.clone(),
        source: io::Error::other(e),
    })?;
    if let Err(source) = packed
        && source.kind() != io::ErrorKind::BrokenPipe
    {
        return Err(ImageError::Pack {
            dir: request.dir.clone(),
            source,
        });
    }
    if let Some(error) = failure {
        return Err(ImageError::Build {
            tag: request.tag.clone(),
            step,
            message: describe(&error),
        });
    }
    match image_id {
        Some(id) => Ok(id),
        None => Ok(id(docker, &request.tag).await?.unwrap_or_default()),
    }
}

/// Writes `dir` and `files` as a tar archive into `sender`, chunk by chunk. Symlinks in `dir`
/// (and in directories named in `files`) stay links; a file named in `files` is read through
/// its links, so a library's versioned name can be copied from its symlink.
fn pack(dir: &Path, files: &[(String, PathBuf)], sender: mpsc::Sender<Bytes>) -> io::Result<()> {
    let mut writer = ChunkWriter {
        sender,
        buffer: Vec::with_capacity(CHUNK),
    };
    {
        let mut archive = tar::Builder::new(&mut writer);
        archive.follow_symlinks(false);
        archive.mode(tar::HeaderMode::Deterministic);
        archive.append_dir_all(".", dir)?;
        for (name, path) in files {
            let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
            if path.is_dir() {
                archive.append_dir_all(name, path).map_err(named)?;
            } else {
                let mut file = std::fs::File::open(path).map_err(named)?;
                archive.append_file(name, &mut file)?;
            }
        }
        archive.finish()?;
    }
    writer.send()
}

struct ChunkWriter {
    sender: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn references() {
        use super::split_reference as split;
        assert_eq!(split("demo"), ("demo", "latest"));
        assert_eq!(split("demo:v1"), ("demo", "v1"));
        assert_eq!(
            split("127.0.0.1:5000/team/demo"),
            ("127.0.0.1:5000/team/demo", "latest")
        );
        assert_eq!(
            split("127.0.0.1:5000/demo:v2"),
            ("127.0.0.1:5000/demo", "v2")
        );
        assert_eq!(split("demo@sha256:ab"), ("demo@sha256:ab", ""));
    }
}
