//! `kumactl`: the CLI over the HTTP API.

mod apply;
mod client;
mod config;
mod error;
mod generate;
mod get;
mod inspect;
mod output;
mod transparent_proxy;

/// How `kumactl apply` reads a file (public for the fuzz target).
pub use apply::parse_documents;

pub use config::KumactlConfig;

use clap::{Parser, Subcommand};
use client::ApiClient;
pub use error::KumactlError;
use output::Format;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kumactl", version, about = "Management tool for Kuma")]
pub struct Cli {
    /// Path to the configuration file [default: ~/.kumactl/config]
    #[arg(long = "config-file", global = true)]
    config_file: Option<PathBuf>,
    /// Mesh to use
    #[arg(short = 'm', long, global = true, default_value = "default")]
    mesh: String,
    #[command(subcommand)]
    command: Command,
}

/// What `kumactl inspect dataplane --type` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectView {
    Policies,
    ConfigDump,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the control planes kumactl talks to
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create or update resources from a file (or - for standard input)
    Apply {
        /// File of resources (YAML, several separated by ---), or - for standard input
        #[arg(short = 'f', long = "file")]
        file: String,
        /// Validate only; change nothing
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Show resources: meshes, dataplanes, traffic-permissions, traffic-logs, proxytemplates
    Get {
        /// Kind of resource, plural or singular
        kind: String,
        /// One resource by name
        name: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    /// Delete a resource: mesh, dataplane, traffic-permission, traffic-log, proxytemplate
    Delete {
        /// Kind of resource, singular or plural
        kind: String,
        /// Name of the resource
        name: String,
    },
    /// Show resources with what the control plane knows of them
    Inspect {
        #[command(subcommand)]
        command: InspectCommand,
    },
    /// Generate dataplane tokens and certificates
    Generate {
        #[command(subcommand)]
        command: GenerateCommand,
    },
    /// Install helpers
    Install {
        #[command(subcommand)]
        command: InstallCommand,
    },
    /// Print the version
    Version {
        /// With the build's details
        #[arg(long)]
        detailed: bool,
    },
    /// Print a shell completion script: `source <(kumactl completion bash)`
    Completion {
        /// The shell
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Ask the control plane's token server for a dataplane token
    #[command(name = "dataplane-token")]
    DataplaneToken {
        /// Name of the dataplane the token is for
        #[arg(long)]
        name: String,
        /// Seconds the token is valid for (the server's default when unset)
        #[arg(long = "valid-for-seconds")]
        valid_for_seconds: Option<u64>,
    },
    /// Ask the control plane for a user token (the admin only)
    #[command(name = "user-token")]
    UserToken {
        /// Name of the user
        #[arg(long)]
        name: String,
        /// A group of the user (repeatable)
        #[arg(long = "group")]
        groups: Vec<String>,
        /// How long the token is valid, e.g. 24h, 30m, 8760h
        #[arg(long = "valid-for")]
        valid_for: String,
    },
    /// A self-signed certificate and key, e.g. for the public token server
    Certificate {
        #[arg(long = "type", value_parser = ["server", "client"])]
        cert_type: String,
        /// Where to write the certificate (PEM)
        #[arg(long)]
        cert: std::path::PathBuf,
        /// Where to write its key (PEM)
        #[arg(long)]
        key: std::path::PathBuf,
        /// Host names the server certificate is for (repeatable)
        #[arg(long = "hostname", default_values = ["localhost"])]
        hostnames: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print kumactl's configuration (its control planes, the current one)
    View,
    /// Manage the control planes kumactl knows
    #[command(name = "control-planes")]
    ControlPlanes {
        #[command(subcommand)]
        command: ControlPlanesCommand,
    },
}

#[derive(Subcommand)]
enum ControlPlanesCommand {
    /// List the control planes
    List,
    /// Add a control plane and make it current
    Add(Box<AddControlPlane>),
    /// Make a control plane current
    Switch {
        /// Name of the control plane
        #[arg(long)]
        name: String,
    },
    /// Forget a control plane
    Remove {
        /// Name of the control plane
        #[arg(long)]
        name: String,
    },
}

/// `kumactl config control-planes add`.
#[derive(clap::Args)]
struct AddControlPlane {
    /// Name to know it by
    #[arg(long)]
    name: String,
    /// URL of its HTTP API, e.g. http://localhost:5681
    #[arg(long)]
    address: String,
    /// Replace a control plane of the same name
    #[arg(long)]
    overwrite: bool,
    /// Client certificate for the public dataplane token server
    #[arg(
        long = "dataplane-token-client-cert",
        requires = "dataplane_token_client_key"
    )]
    dataplane_token_client_cert: Option<String>,
    /// Its key
    #[arg(
        long = "dataplane-token-client-key",
        requires = "dataplane_token_client_cert"
    )]
    dataplane_token_client_key: Option<String>,
    /// How kumactl proves who it is: tokens
    #[arg(long = "auth-type", value_parser = ["tokens"])]
    auth_type: Option<String>,
    /// Settings of the auth type, e.g. token=TOKEN (repeatable)
    #[arg(long = "auth-conf", requires = "auth_type")]
    auth_conf: Vec<String>,
    /// CA certificate (PEM) of the API's HTTPS certificate
    #[arg(long = "ca-cert-file", alias = "ca-cert")]
    ca_cert_file: Option<String>,
    /// Client certificate (PEM) for the HTTPS API
    #[arg(
        long = "client-cert-file",
        alias = "client-cert",
        requires = "client_key_file"
    )]
    client_cert_file: Option<String>,
    /// Its key
    #[arg(
        long = "client-key-file",
        alias = "client-key",
        requires = "client_cert_file"
    )]
    client_key_file: Option<String>,
    /// Do not verify the API's HTTPS certificate
    #[arg(long = "skip-verify")]
    skip_verify: bool,
}

#[derive(Subcommand)]
enum InspectCommand {
    /// Dataplanes with their status
    Dataplanes {
        /// table, yaml or json
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    /// Why one dataplane's proxy got what it got (the policies that
    /// matched it), or with --config-dump the Envoy configuration itself
    Dataplane {
        /// Name of the dataplane
        name: String,
        /// Each policy that applies, per inbound and outbound, and the
        /// selectors that matched (the default)
        #[arg(long, conflicts_with = "config_dump")]
        policies: bool,
        /// The Envoy resources generated for it, as JSON (private keys
        /// left out)
        #[arg(long)]
        config_dump: bool,
        /// What to show, as Kuma's kumactl names it: policies (the
        /// default) or config-dump
        #[arg(long = "type", value_enum, conflicts_with_all = ["policies", "config_dump"])]
        view: Option<InspectView>,
        /// table, yaml or json (the answer of the HTTP API as is)
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    /// Meshes with what is on in each and their dataplanes online / total
    Meshes {
        /// table, yaml or json
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    /// The services of a mesh, with their dataplanes online / total
    Services {
        /// table, yaml or json
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    /// The CA (PEM) that signed the control plane's certificate: what
    /// kuma-dp --ca-cert-file takes to verify the control plane
    ControlPlaneCa,
}

#[derive(Subcommand)]
enum InstallCommand {
    /// Print the database schema
    #[command(name = "database-schema")]
    DatabaseSchema {
        #[arg(long, default_value = "postgres")]
        target: String,
    },
    /// Redirect this network namespace's TCP through the sidecar (what
    /// the kuma-init container runs; needs NET_ADMIN)
    #[command(name = "transparent-proxy")]
    TransparentProxy {
        #[command(flatten)]
        settings: transparent_proxy::Settings,
        /// The iptables back end; detected from the node when not given
        #[arg(long = "iptables-backend", value_enum)]
        iptables_backend: Option<transparent_proxy::Backend>,
        /// Print the rules instead of writing them
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Print Kuma's CustomResourceDefinitions (kuma.io/v1alpha1), for
    /// `kubectl apply -f -`; with --output-dir, write one file per CRD
    #[cfg(feature = "kubernetes")]
    Crds {
        /// Write one file per CRD into this directory instead
        #[arg(long = "output-dir")]
        output_dir: Option<PathBuf>,
    },
    /// Print the control plane's Kubernetes objects (the Helm chart
    /// charts/kuma rendered, with a fresh webhook certificate), for
    /// `kubectl apply -f -`
    #[cfg(feature = "kubernetes")]
    #[command(name = "control-plane")]
    ControlPlane {
        #[command(flatten)]
        options: crate::install::ControlPlaneOptions,
    },
}

struct Session {
    config_path: PathBuf,
    mesh: String,
}

impl Session {
    fn config(&self) -> Result<KumactlConfig, KumactlError> {
        KumactlConfig::load(&self.config_path)
    }

    fn client(&self) -> Result<ApiClient, KumactlError> {
        ApiClient::new(self.config()?.current_api()?)
    }
}

/// Runs one command; its output goes to standard output, and an error is
/// one line for the caller to print.
pub async fn run(cli: Cli) -> Result<(), KumactlError> {
    let session = Session {
        config_path: cli.config_file.unwrap_or_else(config::default_path),
        mesh: cli.mesh,
    };
    match cli.command {
        Command::Config {
            command: ConfigCommand::ControlPlanes { command },
        } => control_planes(&session, command).await,
        Command::Apply { file, dry_run } => apply::run(&session, &file, dry_run).await,
        Command::Get { kind, name, output } => {
            get::get(&session, &kind, name.as_deref(), output).await
        }
        Command::Delete { kind, name } => get::delete(&session, &kind, &name).await,
        Command::Inspect { command } => match command {
            InspectCommand::Dataplanes { output } => inspect::dataplanes(&session, output).await,
            InspectCommand::Dataplane {
                name,
                view,
                policies: _,
                config_dump,
                output,
            } => {
                let config_dump = config_dump || view == Some(InspectView::ConfigDump);
                inspect::dataplane(&session, &name, config_dump, output).await
            }
            InspectCommand::Meshes { output } => inspect::meshes(&session, output).await,
            InspectCommand::Services { output } => inspect::services(&session, output).await,
            InspectCommand::ControlPlaneCa => inspect::control_plane_ca(&session).await,
        },
        Command::Config {
            command: ConfigCommand::View,
        } => {
            print!("{}", session.config()?.to_yaml()?);
            Ok(())
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "kumactl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Generate { command } => match command {
            GenerateCommand::DataplaneToken {
                name,
                valid_for_seconds,
            } => generate::dataplane_token(&session, &name, valid_for_seconds).await,
            GenerateCommand::UserToken {
                name,
                groups,
                valid_for,
            } => generate::user_token(&session, &name, &groups, &valid_for).await,
            GenerateCommand::Certificate {
                cert_type,
                cert,
                key,
                hostnames,
            } => generate::certificate(&cert_type, &cert, &key, &hostnames),
        },
        Command::Install {
            command: InstallCommand::DatabaseSchema { target },
        } => {
            if target != "postgres" {
                return Err(KumactlError::Invalid(format!(
                    "unknown --target \"{target}\"; the only database is postgres"
                )));
            }
            print!("{}", crate::store::migrations::full_schema_sql());
            Ok(())
        }
        Command::Install {
            command:
                InstallCommand::TransparentProxy {
                    settings,
                    iptables_backend,
                    dry_run,
                },
        } => transparent_proxy::install(&settings, iptables_backend, dry_run),
        #[cfg(feature = "kubernetes")]
        Command::Install {
            command: InstallCommand::Crds { output_dir },
        } => match output_dir {
            None => {
                print!("{}", crate::k8s::crd::definitions_yaml());
                Ok(())
            }
            Some(dir) => {
                std::fs::create_dir_all(&dir).map_err(KumactlError::file(&dir))?;
                for (file, text) in crate::k8s::crd::definition_files() {
                    let path = dir.join(file);
                    std::fs::write(&path, text).map_err(KumactlError::file(&path))?;
                }
                Ok(())
            }
        },
        #[cfg(feature = "kubernetes")]
        Command::Install {
            command: InstallCommand::ControlPlane { options },
        } => {
            print!("{}", crate::install::control_plane(&options)?);
            Ok(())
        }
        Command::Version { detailed } => {
            println!("{}", crate::version::describe("kumactl", detailed));
            Ok(())
        }
    }
}

/// Files named in the configuration are kept as absolute paths, so that
/// kumactl finds them from any directory.
fn absolute(path: &str) -> Result<String, KumactlError> {
    std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .map_err(KumactlError::file(path))
}

async fn control_planes(
    session: &Session,
    command: ControlPlanesCommand,
) -> Result<(), KumactlError> {
    let mut config = session.config()?;
    match command {
        ControlPlanesCommand::List => {
            let rows: Vec<Vec<String>> = config
                .control_planes
                .iter()
                .map(|cp| {
                    let active = if cp.name == config.current_context {
                        "*"
                    } else {
                        ""
                    };
                    vec![
                        active.to_string(),
                        cp.name.clone(),
                        cp.coordinates.api_server.url.clone(),
                    ]
                })
                .collect();
            print!("{}", output::table(&["ACTIVE", "NAME", "ADDRESS"], &rows));
            return Ok(());
        }
        ControlPlanesCommand::Add(add) => {
            let AddControlPlane {
                name,
                address,
                overwrite,
                dataplane_token_client_cert,
                dataplane_token_client_key,
                auth_type,
                auth_conf,
                ca_cert_file,
                client_cert_file,
                client_key_file,
                skip_verify,
            } = *add;
            if config.contains(&name) && !overwrite {
                return Err(KumactlError::Invalid(format!(
                    "a control plane named \"{name}\" already exists; use --overwrite to replace it"
                )));
            }
            let mut conf = std::collections::BTreeMap::new();
            for pair in &auth_conf {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    KumactlError::Invalid(format!(
                        "--auth-conf \"{pair}\" must be key=value, e.g. token=TOKEN"
                    ))
                })?;
                conf.insert(k.to_string(), v.to_string());
            }
            let file = |f: Option<String>| f.map(|f| absolute(&f)).transpose();
            let api = config::ApiServer {
                url: address.clone(),
                auth_type: auth_type.unwrap_or_default(),
                auth_conf: conf,
                ca_cert_file: file(ca_cert_file)?.unwrap_or_default(),
                client_cert_file: file(client_cert_file)?.unwrap_or_default(),
                client_key_file: file(client_key_file)?.unwrap_or_default(),
                skip_verify,
            };
            // Kuma checks the address answers, with these credentials,
            // before saving it.
            let client = ApiClient::new(&api)?;
            client.get("/").await.map_err(|e| {
                KumactlError::Invalid(format!("control plane \"{name}\" was not added: {e}"))
            })?;
            if !api.auth_type.is_empty() || !api.client_cert_file.is_empty() {
                client.get("/meshes").await.map_err(|e| {
                    KumactlError::Invalid(format!(
                        "control plane \"{name}\" was not added: its credentials were refused: {e}"
                    ))
                })?;
            }
            let token_client = match (dataplane_token_client_cert, dataplane_token_client_key) {
                (Some(cert), Some(key)) => Some(config::TokenServerClient {
                    client_cert: absolute(&cert)?,
                    client_key: absolute(&key)?,
                }),
                _ => None,
            };
            config.add(&name, api, token_client);
            println!("added Control Plane \"{name}\"");
            println!("switched active Control Plane to \"{name}\"");
        }
        ControlPlanesCommand::Switch { name } => {
            config.switch(&name)?;
            println!("switched active Control Plane to \"{name}\"");
        }
        ControlPlanesCommand::Remove { name } => {
            if !config.remove(&name) {
                return Err(KumactlError::Invalid(format!(
                    "there is no control plane named \"{name}\""
                )));
            }
            println!("removed Control Plane \"{name}\"");
        }
    }
    config.save(&session.config_path)
}
