//! The image and network half of `docker::*`: `image_exists`, `pull` and `build` with progress
//! on the terminal, and `network` to make sure a network exists. Images are never pulled behind
//! a script's back: `docker::run` and `compose::up` use what is here (compose pulls what is
//! missing, as docker compose does).

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use bollard::models::NetworkCreateRequest;
use rhai::{Map, Module};

use super::{HostResult, docker::wait, fail, function, options::Options};
use crate::{
    context::Context,
    context::progress::Progress,
    docker::Doing,
    docker::image::{self, BuildRequest},
};

pub fn register(module: &mut Module, context: &Arc<Context>) {
    function!(module,
        /// True when image `reference` (`name:tag`, `name@digest` or an id) is in the engine's
        /// store.
        ///
        /// ```rhai
        /// if !docker::image_exists("app:v2") { docker::pull("registry.local/app:v2"); }
        /// ```
        fn image_exists[context](call, reference: &str) -> bool {
            let docker = context.docker()?;
            wait(&context, image::exists(&docker, reference))
        }
    );
    function!(module,
        /// Pulls an image from its registry, showing progress; returns its id. A reference
        /// without a tag means `:latest`.
        ///
        /// ```rhai
        /// let id = docker::pull("127.0.0.1:5000/app:v2");
        /// ```
        fn pull[context](call, reference: &str) -> String {
            let docker = context.docker()?;
            context.change("docker::pull", reference, String::new, || {
                let progress = Progress::spinner(&context, &format!("pulling {reference}"));
                wait(&context, image::pull(&docker, reference, &|m| progress.set_message(m)))
            })
        }
    );
    function!(module,
        /// Builds an image from directory `context_dir` (its `Dockerfile`, the whole directory
        /// streamed to the engine as the build context) and tags it `tag`, showing each step;
        /// returns the image id. A failing step is named in the error.
        ///
        /// ```rhai
        /// docker::build("deploy/demo-service/image", "cutover-demo:dev");
        /// ```
        fn build[context](call, context_dir: &str, tag: &str) -> String {
            build(&context, context_dir, tag, Map::new())
        }
    );
    function!(module,
        /// `build` with options: `dockerfile` (relative to the directory), `args` (build
        /// arguments) and `labels` (maps), `files` (a map from a name in the context to a file
        /// or directory elsewhere, added to the context: a binary built outside the directory,
        /// a tree of the host's own files for an image built without a registry).
        ///
        /// ```rhai
        /// docker::build("app", "app:v2", #{dockerfile: "Dockerfile.prod", args: #{VERSION: "v2"}});
        /// docker::build("deploy/demo-service/image", "cutover-demo:dev",
        ///     #{files: #{"demo-service": "target/demo/x86_64-unknown-linux-gnu/release/demo-service"}});
        /// ```
        fn build[context](call, context_dir: &str, tag: &str, options: Map) -> String {
            build(&context, context_dir, tag, options)
        }
    );
    function!(module,
        /// Makes sure a bridge network `name` exists, creating it if needed; returns its id.
        ///
        /// ```rhai
        /// docker::network("stack");
        /// ```
        fn network[context](call, name: &str) -> String {
            network(&context, name, Map::new())
        }
    );
    function!(module,
        /// `network` with options: `labels` (a map) for a network it creates, `internal`
        /// (no route to the outside).
        ///
        /// ```rhai
        /// docker::network("stack", #{labels: #{app: "shop"}});
        /// ```
        fn network[context](call, name: &str, options: Map) -> String {
            network(&context, name, options)
        }
    );
}

fn pairs_map(pairs: Option<Vec<(String, String)>>) -> HashMap<String, String> {
    pairs.unwrap_or_default().into_iter().collect()
}

fn build(context: &Context, dir: &str, tag: &str, options: Map) -> HostResult<String> {
    let options = Options::new(
        "docker::build",
        options,
        &["dockerfile", "args", "labels", "files"],
    )?;
    let request = BuildRequest {
        dir: PathBuf::from(dir),
        tag: tag.to_string(),
        dockerfile: options.string("dockerfile")?,
        args: pairs_map(options.pairs("args")?),
        labels: pairs_map(options.pairs("labels")?),
        files: options
            .pairs("files")?
            .unwrap_or_default()
            .into_iter()
            .map(|(name, path)| (name, PathBuf::from(path)))
            .collect(),
    };
    if !request.dir.is_dir() {
        return Err(fail(format!("docker::build: {dir} is not a directory")));
    }
    let docker = context.docker()?;
    context.change(
        "docker::build",
        &format!("{dir} as {tag}"),
        String::new,
        || {
            let progress = Progress::spinner(context, &format!("building {tag}"));
            let id = wait(
                context,
                image::build(&docker, &request, &|m| progress.set_message(m)),
            )?;
            tracing::info!(
                "built {tag} ({})",
                id.trim_start_matches("sha256:").get(..12).unwrap_or(&id)
            );
            Ok(id)
        },
    )
}

fn network(context: &Context, name: &str, options: Map) -> HostResult<String> {
    let options = Options::new("docker::network", options, &["labels", "internal"])?;
    let labels = pairs_map(options.pairs("labels")?);
    let internal = options.bool("internal")?.unwrap_or(false);
    let docker = context.docker()?;
    let existing = wait(context, async {
        match docker.inspect_network(name, None).await {
            Ok(network) => Ok(network.id),
            Err(error) if crate::docker::is_status(&error, 404) => Ok(None),
            Err(error) => Err(error).doing(format!("inspect network {name}")),
        }
    })?;
    if let Some(id) = existing {
        return Ok(id);
    }
    context.change(
        "docker::network",
        &format!("create {name}"),
        String::new,
        || {
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                internal: Some(internal),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            wait(context, async {
                docker
                    .create_network(request)
                    .await
                    .doing(format!("create network {name}"))
                    .map(|created| created.id)
            })
        },
    )
}
