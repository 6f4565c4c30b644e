//! Session templates, and the project snapshot read back from a workspace: manifest, package
//! manager, framework, dev command and port.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::workspace::{FsError, Workspace};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    #[default]
    Empty,
    Static,
    ViteReact,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Static => "static",
            Self::ViteReact => "vite-react",
        }
    }

    /// The files a new session starts with.
    pub fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Empty => &[],
            Self::Static => &[
                ("index.html", include_str!("../templates/static/index.html")),
                ("style.css", include_str!("../templates/static/style.css")),
            ],
            Self::ViteReact => &[
                (
                    "package.json",
                    include_str!("../templates/vite-react/package.json"),
                ),
                (
                    "vite.config.js",
                    include_str!("../templates/vite-react/vite.config.js"),
                ),
                (
                    "index.html",
                    include_str!("../templates/vite-react/index.html"),
                ),
                (
                    "src/main.jsx",
                    include_str!("../templates/vite-react/src/main.jsx"),
                ),
                (
                    "src/App.jsx",
                    include_str!("../templates/vite-react/src/App.jsx"),
                ),
            ],
        }
    }
}

/// What the sandbox knows about the project in a workspace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The manifest file, e.g. `package.json`.
    pub manifest: Option<String>,
    /// `npm`, `pnpm`, `yarn`, `bun` or `pip`.
    pub package_manager: Option<String>,
    /// e.g. `vite`, `next`, `react`, `static`.
    pub framework: Option<String>,
    /// The command that starts the dev server.
    pub dev_command: Option<String>,
    pub port: Option<u16>,
}

/// Largest manifest read.
const MANIFEST_LIMIT: usize = 256 * 1024;

impl Snapshot {
    pub fn read(workspace: &Workspace) -> Result<Self, FsError> {
        let mut snapshot = Self::default();
        if workspace.is_file("package.json")? {
            snapshot.manifest = Some("package.json".into());
            let manifest: Value =
                serde_json::from_str(&workspace.read("package.json", MANIFEST_LIMIT)?.content)
                    .unwrap_or(Value::Null);
            snapshot.package_manager = Some(
                [
                    ("pnpm-lock.yaml", "pnpm"),
                    ("yarn.lock", "yarn"),
                    ("bun.lockb", "bun"),
                    ("bun.lock", "bun"),
                ]
                .into_iter()
                .find(|(lock, _)| workspace.is_file(lock).unwrap_or(false))
                .map_or("npm", |(_, manager)| manager)
                .to_owned(),
            );
            let has = |dep: &str| {
                ["dependencies", "devDependencies"]
                    .iter()
                    .any(|group| manifest[group].get(dep).is_some())
            };
            let (framework, port) = if has("next") {
                (Some("next"), Some(3000))
            } else if has("vite") {
                (Some("vite"), Some(5173))
            } else if has("react") {
                (Some("react"), None)
            } else {
                (None, None)
            };
            snapshot.framework = framework.map(str::to_owned);
            snapshot.port = port;
            if manifest["scripts"]["dev"].is_string() {
                let manager = snapshot.package_manager.as_deref().unwrap_or("npm");
                snapshot.dev_command = Some(format!("{manager} run dev"));
            }
        } else if workspace.is_file("requirements.txt")? || workspace.is_file("pyproject.toml")? {
            let manifest = if workspace.is_file("pyproject.toml")? {
                "pyproject.toml"
            } else {
                "requirements.txt"
            };
            snapshot.manifest = Some(manifest.into());
            snapshot.package_manager = Some("pip".into());
        } else if workspace.is_file("index.html")? {
            snapshot.framework = Some("static".into());
            snapshot.dev_command = Some("python3 -m http.server 8080".into());
            snapshot.port = Some(8080);
        }
        Ok(snapshot)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
