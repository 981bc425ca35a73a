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

use crate::docker::{Doing, EngineError, describe, ignore::Ignore};

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
    /// The Dockerfile stage to build; the last when `None`.
    pub target: Option<String>,
}

/// The label a built image carries with [`context_digest`] of what it was built from.
pub const CONTEXT_LABEL: &str = "cutover.build.context";

/// The files of a build context as they are sent, `.dockerignore` applied: (name in the
/// context, path on the host), sorted, directories before what they hold.
pub fn context_files(dir: &Path, dockerfile: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let ignore = Ignore::load(dir)?;
    let keep = |name: &str| name == dockerfile || name == ".dockerignore";
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, path)) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries.into_iter().rev() {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let is_dir = entry.file_type()?.is_dir();
            let excluded = ignore.excluded(&name) && !keep(&name);
            if is_dir && (!excluded || ignore.has_exceptions()) {
                pending.push((format!("{name}/"), entry.path()));
            }
            if !excluded {
                found.push((name, entry.path()));
            }
        }
    }
    // The Dockerfile goes even from a directory the walk left out, as the CLI sends it.
    let named = dir.join(dockerfile);
    if named.is_file() && !found.iter().any(|(name, _)| name == dockerfile) {
        found.push((dockerfile.to_string(), named));
    }
    found.sort();
    Ok(found)
}

/// A digest of everything a build of `request` reads: every file of the context sent (name,
/// mode, content or link target), the Dockerfile's name, arguments, target and labels.
/// Equal digests mean a rebuild would give the same image.
pub fn context_digest(request: &BuildRequest) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let dockerfile = request.dockerfile.as_deref().unwrap_or("Dockerfile");
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    for (name, path) in context_files(&request.dir, dockerfile)?
        .into_iter()
        .chain(request.files.clone())
    {
        let meta = std::fs::symlink_metadata(&path)?;
        field(name.as_bytes());
        field(&meta.permissions().mode().to_le_bytes());
        if meta.file_type().is_symlink() {
            field(std::fs::read_link(&path)?.as_os_str().as_encoded_bytes());
        } else if meta.is_file() {
            let mut file = std::fs::File::open(&path)?;
            let mut content = Sha256::new();
            let mut buffer = vec![0; CHUNK];
            loop {
                let n = io::Read::read(&mut file, &mut buffer)?;
                if n == 0 {
                    break;
                }
                content.update(&buffer[..n]);
            }
            field(&content.finalize());
        }
    }
    field(dockerfile.as_bytes());
    let sorted = |map: &HashMap<String, String>| {
        let mut pairs: Vec<_> = map.iter().collect();
        pairs.sort();
        format!("{pairs:?}")
    };
    field(sorted(&request.args).as_bytes());
    field(sorted(&request.labels).as_bytes());
    field(request.target.as_deref().unwrap_or_default().as_bytes());
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `tag` must be built from `request`, found by comparing [`context_digest`] with the
/// [`CONTEXT_LABEL`] of the image the tag names now.
#[derive(Debug)]
pub enum Freshness {
    /// The image the tag names was built from this very context: its id, and the request
    /// with its label, should it be rebuilt anyway.
    Current { id: String, request: BuildRequest },
    /// A build is needed, for `reason`; `request` carries the label to give the new image.
    Stale {
        request: BuildRequest,
        reason: &'static str,
    },
}

/// Says whether `request` needs building: an image tagged `request.tag` built from the same
/// context (files, Dockerfile, arguments, labels, target) is current and is kept, so its id
/// and its other tags stay as they were.
pub async fn freshness(docker: &Docker, request: &BuildRequest) -> Result<Freshness, ImageError> {
    let digest_of = request.clone();
    let pack_error = |source| ImageError::Pack {
        dir: request.dir.clone(),
        source,
    };
    let digest = tokio::task::spawn_blocking(move || context_digest(&digest_of))
        .await
        .map_err(|e| pack_error(io::Error::other(e)))?
        .map_err(pack_error)?;
    let found = labels(docker, &request.tag).await?;
    let mut request = request.clone();
    request
        .labels
        .insert(CONTEXT_LABEL.to_string(), digest.clone());
    Ok(match found {
        None => Freshness::Stale {
            request,
            reason: "image missing",
        },
        Some((_, labels)) if labels.get(CONTEXT_LABEL) != Some(&digest) => Freshness::Stale {
            request,
            reason: "build context changed",
        },
        Some((id, _)) => Freshness::Current { id, request },
    })
}

/// An image's id and labels, if it is here.
pub async fn labels(
    docker: &Docker,
    reference: &str,
) -> Result<Option<(String, HashMap<String, String>)>, EngineError> {
    match docker.inspect_image(reference).await {
        Ok(image) => Ok(Some((
            image.id.unwrap_or_default(),
            image.config.and_then(|c| c.labels).unwrap_or_default(),
        ))),
        Err(error) if crate::docker::is_status(&error, 404) => Ok(None),
        Err(error) => Err(error).doing(format!("inspect image {reference}")),
    }
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
    let (sender, mut receiver) = mpsc::channel::<Bytes>(4);
    let (dir, files) = (request.dir.clone(), request.files.clone());
    let named = dockerfile.to_string();
    let packer = tokio::task::spawn_blocking(move || pack(&dir, &named, &files, sender));
    let body = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .t(&request.tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&request.args)
        .labels(&request.labels);
    if let Some(target) = &request.target {
        options = options.target(target);
    }
    let options = options.build();
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

/// Writes `dir` (less what its `.dockerignore` leaves out) and `files` as a tar archive into
/// `sender`, chunk by chunk. Symlinks in `dir` (and in directories named in `files`) stay
/// links; a file named in `files` is read through its links, so a library's versioned name can
/// be copied from its symlink.
fn pack(
    dir: &Path,
    dockerfile: &str,
    files: &[(String, PathBuf)],
    sender: mpsc::Sender<Bytes>,
) -> io::Result<()> {
    let mut writer = ChunkWriter {
        sender,
        buffer: Vec::with_capacity(CHUNK),
    };
    {
        let mut archive = tar::Builder::new(&mut writer);
        archive.follow_symlinks(false);
        archive.mode(tar::HeaderMode::Deterministic);
        for (name, path) in context_files(dir, dockerfile)? {
            archive.append_path_with_name(&path, &name)?;
        }
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
    use super::*;

    #[test]
    fn the_context_leaves_out_what_dockerignore_says_and_its_digest_follows_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("Dockerfile", "FROM scratch\n");
        write(
            ".dockerignore",
            "Dockerfile\n*.log\nbuild/\n!build/keep\ndocker/\n",
        );
        write("docker/Dockerfile.dev", "FROM scratch\n");
        write("docker/other", "left out\n");
        write("src/main.rs", "fn main() {}\n");
        write("app.log", "noise\n");
        write("build/out", "binary\n");
        write("build/keep", "kept\n");
        let names: Vec<String> = context_files(dir.path(), "Dockerfile")
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "build/keep",
                "src",
                "src/main.rs"
            ]
        );
        let names: Vec<String> = context_files(dir.path(), "docker/Dockerfile.dev")
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert!(
            names.contains(&"docker/Dockerfile.dev".to_string()),
            "{names:?}"
        );
        assert!(!names.contains(&"docker/other".to_string()), "{names:?}");
        let request = BuildRequest {
            dir: dir.path().to_path_buf(),
            tag: "t".into(),
            ..Default::default()
        };
        let before = context_digest(&request).unwrap();
        write("app.log", "more noise\n");
        assert_eq!(context_digest(&request).unwrap(), before);
        write("src/main.rs", "fn main() { changed() }\n");
        assert_ne!(context_digest(&request).unwrap(), before);
        let with_arg = BuildRequest {
            args: HashMap::from([("A".into(), "1".into())]),
            ..request.clone()
        };
        assert_ne!(
            context_digest(&with_arg).unwrap(),
            context_digest(&request).unwrap()
        );
    }

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
