//! The Helm chart `charts/kuma`, embedded at build time (see `build.rs`),
//! and rendering it as Helm's engine does: every file under `templates/`
//! parsed into one set of Go templates (so `define`s are shared), each file
//! not starting with `_` executed with `.Values`, `.Release`, `.Chart`,
//! `.Template` and `.Capabilities`, `<no value>` printed as nothing, the
//! output split into YAML documents.
//!
//! The engine is gtmpl. Unlike Go it ranges over a map in no fixed order, so
//! the chart ranges over lists only; a test renders twice and compares.

use super::{InstallError, sprig};
use gtmpl::{Context, FuncError, Template, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// (path inside the chart, contents) of every file of `charts/kuma`.
const FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/chart_files.rs"));

/// Where the release goes; `helm template NAME --namespace NAMESPACE`.
pub struct Release {
    pub name: String,
    pub namespace: String,
}

/// One YAML document of the rendering, with the template it came from.
#[derive(Debug)]
pub struct Manifest {
    /// As Helm prints it: `kuma/templates/rbac.yaml`.
    pub source: String,
    pub text: String,
    /// The document parsed, for ordering and checks.
    pub object: serde_json::Value,
}

/// The chart's metadata (`Chart.yaml`) as JSON.
pub fn metadata() -> Result<serde_json::Value, InstallError> {
    yaml_file("Chart.yaml")
}

/// The chart's `values.yaml`.
pub fn default_values() -> Result<serde_json::Value, InstallError> {
    super::values::parse("charts/kuma/values.yaml", file("values.yaml")?)
}

/// The chart's CRDs (`crds/`), which Helm installs before the templates.
pub fn crds() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILES
        .iter()
        .copied()
        .filter(|(path, _)| path.starts_with("crds/"))
}

fn file(path: &str) -> Result<&'static str, InstallError> {
    FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
        .ok_or_else(|| InstallError::Chart(format!("the chart has no {path}")))
}

fn yaml_file(path: &str) -> Result<serde_json::Value, InstallError> {
    serde_yaml_ng::from_str(file(path)?)
        .map_err(|e| InstallError::Chart(format!("charts/kuma/{path}: {e}")))
}

/// Renders every template with `values`, in the chart's file order.
pub fn render(
    values: &serde_json::Value,
    release: &Release,
) -> Result<Vec<Manifest>, InstallError> {
    let metadata = metadata()?;
    let chart_name = metadata["name"].as_str().unwrap_or("kuma").to_string();
    let templates: Vec<(String, &str)> = FILES
        .iter()
        .filter(|(path, _)| path.starts_with("templates/"))
        .map(|(path, text)| (format!("{chart_name}/{path}"), *text))
        .collect();
    let set = Rc::new(TemplateSet::parse(&templates)?);
    let _installed = CurrentSet::install(set.clone());
    let mut manifests = Vec::new();
    for (name, _) in &templates {
        let partial = name.rsplit('/').next().is_some_and(|f| f.starts_with('_'));
        if partial {
            continue;
        }
        let data = render_data(values, release, &metadata, name, &chart_name);
        let output = set
            .execute(name, data)
            .map_err(|message| InstallError::Template {
                template: name.clone(),
                message,
            })?;
        for text in split_documents(&output.replace("<no value>", "")) {
            let object: serde_json::Value =
                serde_yaml_ng::from_str(&text).map_err(|e| InstallError::Template {
                    template: name.clone(),
                    message: format!("rendered invalid YAML: {e}"),
                })?;
            if !object.is_null() {
                manifests.push(Manifest {
                    source: name.clone(),
                    text,
                    object,
                });
            }
        }
    }
    Ok(manifests)
}

/// Helm's split of a file's output into documents: on `---` lines, each
/// document trimmed.
fn split_documents(output: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in output.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else {
            let document = documents.last_mut().expect("never empty");
            document.push_str(line);
            document.push('\n');
        }
    }
    documents
        .into_iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

/// The top-level object a template sees, as Helm builds it.
fn render_data(
    values: &serde_json::Value,
    release: &Release,
    metadata: &serde_json::Value,
    template: &str,
    chart_name: &str,
) -> Value {
    let map = |entries: Vec<(&str, Value)>| {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    };
    // Chart.yaml's keys as Helm's Go struct names them: appVersion is
    // .Chart.AppVersion, apiVersion is .Chart.APIVersion.
    let chart = match metadata {
        serde_json::Value::Object(fields) => Value::Map(
            fields
                .iter()
                .map(|(key, value)| {
                    let name = match key.as_str() {
                        "apiVersion" => "APIVersion".to_string(),
                        other => {
                            let mut chars = other.chars();
                            chars
                                .next()
                                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                                .unwrap_or_default()
                        }
                    };
                    (name, to_value(value))
                })
                .collect(),
        ),
        _ => Value::Nil,
    };
    map(vec![
        ("Values", to_value(values)),
        (
            "Release",
            map(vec![
                ("Name", Value::from(release.name.as_str())),
                ("Namespace", Value::from(release.namespace.as_str())),
                ("Service", Value::from("Helm")),
                ("IsInstall", Value::Bool(true)),
                ("IsUpgrade", Value::Bool(false)),
                ("Revision", Value::from(1)),
            ]),
        ),
        ("Chart", chart),
        (
            "Template",
            map(vec![
                ("Name", Value::from(template)),
                ("BasePath", Value::from(format!("{chart_name}/templates"))),
            ]),
        ),
    ])
}

fn to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        serde_json::Value::Object(fields) => Value::Map(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect(),
        ),
    }
}

/// Every named template of the chart (each file and each `define`), ready
/// to execute. gtmpl executes the template named like the `Template`, so
/// each name gets its own parse of the whole set.
struct TemplateSet {
    by_name: HashMap<String, Template>,
}

/// How deep `include` may nest, so that a template including itself is an
/// error rather than a stack overflow.
const MAX_INCLUDE_DEPTH: usize = 64;

impl TemplateSet {
    fn parse(files: &[(String, &str)]) -> Result<TemplateSet, InstallError> {
        let parse_as = |name: &str| -> Result<Template, InstallError> {
            let mut template = Template::with_name(name);
            template.add_funcs(sprig::FUNCTIONS);
            template.add_func("include", include);
            for (file, text) in files {
                template.add_template(file.as_str(), *text).map_err(|e| {
                    InstallError::Template {
                        template: file.clone(),
                        message: e.to_string(),
                    }
                })?;
            }
            Ok(template)
        };
        let names: Vec<String> = parse_as("")?.tree_set.into_keys().collect();
        let by_name = names
            .into_iter()
            .map(|name| Ok((name.clone(), parse_as(&name)?)))
            .collect::<Result<_, InstallError>>()?;
        Ok(TemplateSet { by_name })
    }

    fn execute(&self, name: &str, data: Value) -> Result<String, String> {
        let template = self
            .by_name
            .get(name)
            .ok_or_else(|| format!("no template named \"{name}\""))?;
        template
            .render(&Context::from(data))
            .map_err(|e| e.to_string())
    }
}

thread_local! {
    /// The set `include` executes from, while a rendering runs on this
    /// thread (gtmpl's functions are plain `fn`s, without a context), and
    /// how deep includes are nested.
    static CURRENT: RefCell<Option<(Rc<TemplateSet>, usize)>> = const { RefCell::new(None) };
}

/// Makes a set current for `include` until dropped.
struct CurrentSet;

impl CurrentSet {
    fn install(set: Rc<TemplateSet>) -> CurrentSet {
        CURRENT.with(|current| *current.borrow_mut() = Some((set, 0)));
        CurrentSet
    }
}

impl Drop for CurrentSet {
    fn drop(&mut self) {
        CURRENT.with(|current| *current.borrow_mut() = None);
    }
}

/// `include NAME DATA`: the output of a named template, as a string that
/// can be piped on (unlike Go's `template` action).
fn include(args: &[Value]) -> Result<Value, FuncError> {
    let (name, data) = match args {
        [Value::String(name), data] => (name.clone(), data.clone()),
        _ => {
            return Err(FuncError::Generic(
                "include: expected a template name and its data".to_string(),
            ));
        }
    };
    let set = CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let (set, depth) = current
            .as_mut()
            .ok_or_else(|| FuncError::Generic("include: no chart is being rendered".into()))?;
        if *depth >= MAX_INCLUDE_DEPTH {
            return Err(FuncError::Generic(format!(
                "include \"{name}\": nested more than {MAX_INCLUDE_DEPTH} deep (does it include itself?)"
            )));
        }
        *depth += 1;
        Ok(set.clone())
    })?;
    let result = set.execute(&name, data);
    CURRENT.with(|current| {
        if let Some((_, depth)) = current.borrow_mut().as_mut() {
            *depth -= 1;
        }
    });
    result
        .map(Value::from)
        .map_err(|message| FuncError::Generic(format!("include \"{name}\": {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_one(text: &str, data: Value) -> Result<String, String> {
        let files = vec![
            (
                "t/_helpers.tpl".to_string(),
                r#"{{- define "greet" -}}hello {{ . }}{{- end }}{{- define "loop" -}}{{ include "loop" . }}{{- end }}"#,
            ),
            ("t/main.yaml".to_string(), text),
        ];
        let set = Rc::new(TemplateSet::parse(&files).map_err(|e| e.to_string())?);
        let _current = CurrentSet::install(set.clone());
        set.execute("t/main.yaml", data)
    }

    #[test]
    fn include_pipes_a_named_template_on() {
        assert_eq!(
            render_one(r#"{{ include "greet" "mesh" | quote }}"#, Value::Nil).unwrap(),
            "\"hello mesh\""
        );
    }

    #[test]
    fn a_template_including_itself_is_an_error() {
        let e = render_one(r#"{{ include "loop" . }}"#, Value::Nil).unwrap_err();
        assert!(e.contains("nested more than"), "{e}");
    }

    #[test]
    fn documents_split_on_separator_lines() {
        assert_eq!(
            split_documents("a: 1\n---\n\n---\nb: 2\n  ---x\n"),
            vec!["a: 1".to_string(), "b: 2\n  ---x".to_string()]
        );
    }
}
