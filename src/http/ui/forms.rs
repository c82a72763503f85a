//! `/ui/new/{kind}`: a form for each kind of job. "Preview plan" shows the dry run, "Submit job"
//! stores the job; both turn the form into the JSON body the API takes and go through the same
//! parsing, validation and store code (`plans::plan`, `submit::store`), so that every rule and
//! every message is the API's. Field errors of a 422 are shown at their fields.

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::layout::{self, Nav};
use super::session::{Fields, Session, TokenForm};
use super::{read_only_page, see_other};
use crate::domain::{FieldError, JobKind, Plan};
use crate::http::middleware::RequestId;
use crate::http::submit::{self, Submission};
use crate::http::{ApiError, AppState, plans};
use crate::plan::StepPreview;

/// How a field is entered, and how it goes into the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// A string; sent even when empty if the field is required (the API then says what is
    /// wrong with it), else left out when empty.
    Text { required: bool },
    /// A string left out when empty (a password is then generated).
    Password,
    /// A whole number, left out when empty; anything else is sent as a string, and the API's
    /// type error is shown at the field.
    Number { required: bool },
    /// `true` when checked, else `false`.
    Check { checked: bool },
}

#[derive(Clone, Copy)]
struct Field {
    /// The JSON path (`resources.cpu_cores`), also the form field's name and where the API's
    /// field errors point.
    name: &'static str,
    label: &'static str,
    input: Input,
    hint: &'static str,
}

struct Form {
    kind: JobKind,
    title: &'static str,
    intro: &'static str,
    fields: &'static [Field],
}

const fn text(
    name: &'static str,
    label: &'static str,
    required: bool,
    hint: &'static str,
) -> Field {
    Field {
        name,
        label,
        input: Input::Text { required },
        hint,
    }
}

const fn number(name: &'static str, label: &'static str, required: bool) -> Field {
    Field {
        name,
        label,
        input: Input::Number { required },
        hint: "",
    }
}

const fn check(
    name: &'static str,
    label: &'static str,
    checked: bool,
    hint: &'static str,
) -> Field {
    Field {
        name,
        label,
        input: Input::Check { checked },
        hint,
    }
}

const fn password(name: &'static str, label: &'static str) -> Field {
    Field {
        name,
        label,
        input: Input::Password,
        hint: "Leave empty to have a strong one generated; it is then shown once on the finished job.",
    }
}

const OPERATORS: [Field; 3] = [
    check("operators.postgresql", "PostgreSQL", false, ""),
    check("operators.mysql", "MySQL (XtraDB Cluster)", false, ""),
    check("operators.mongodb", "MongoDB", false, ""),
];

const FORMS: &[Form] = &[
    Form {
        kind: JobKind::BootstrapUser,
        title: "Bootstrap a tenant",
        intro: "Creates the account, adds its namespace with the chosen database operators, \
                applies the resource quota and binds its RBAC role.",
        fields: &[
            text("username", "Username", true, ""),
            text(
                "namespace",
                "Namespace",
                false,
                "Leave empty to use the username.",
            ),
            password("password", "Password"),
            OPERATORS[0],
            OPERATORS[1],
            OPERATORS[2],
            check(
                "take_ownership",
                "Take ownership of an existing namespace",
                false,
                "",
            ),
            number("resources.cpu_cores", "CPU cores", false),
            number("resources.ram_mb", "Memory (MiB)", false),
            number("resources.disk_gb", "Disk (GiB)", false),
            number("resources.max_databases", "Most databases", false),
        ],
    },
    Form {
        kind: JobKind::SetPassword,
        title: "Set a password",
        intro: "Sets the password of an existing account.",
        fields: &[
            text("username", "Username", true, ""),
            password("new_password", "New password"),
        ],
    },
    Form {
        kind: JobKind::UpdateResources,
        title: "Update resources",
        intro: "Applies the ResourceQuota and LimitRange of a namespace Everest manages again, \
                with these values.",
        fields: &[
            text("namespace", "Namespace", true, ""),
            number("resources.cpu_cores", "CPU cores", true),
            number("resources.ram_mb", "Memory (MiB)", true),
            number("resources.disk_gb", "Disk (GiB)", true),
            number("resources.max_databases", "Most databases", false),
        ],
    },
    Form {
        kind: JobKind::AddOperators,
        title: "Add operators",
        intro: "Adds database operators to a namespace (operators are never removed).",
        fields: &[
            text("namespace", "Namespace", true, ""),
            OPERATORS[0],
            OPERATORS[1],
            OPERATORS[2],
        ],
    },
    Form {
        kind: JobKind::SuspendUser,
        title: "Suspend a user",
        intro: "Removes the user's RBAC bindings (and the rules of roles only it held); the \
                account and its password stay.",
        fields: &[text("username", "Username", true, "")],
    },
    Form {
        kind: JobKind::ResumeUser,
        title: "Resume a user",
        intro: "Puts back exactly what the user's latest suspension removed.",
        fields: &[text("username", "Username", true, "")],
    },
    Form {
        kind: JobKind::DeleteUser,
        title: "Delete a tenant",
        intro: "Removes the namespace (unless unchecked below), revokes the user's RBAC lines and \
                deletes the account.",
        fields: &[
            text("username", "Username", true, ""),
            text(
                "namespace",
                "Namespace",
                false,
                "Leave empty to use the username.",
            ),
            check("remove_namespace", "Remove the namespace", true, ""),
            check(
                "keep_namespace",
                "Keep the Kubernetes namespace",
                false,
                "Everest stops managing it, but the namespace itself stays.",
            ),
            check(
                "force",
                "Force",
                false,
                "Also delete the databases running in it.",
            ),
        ],
    },
];

fn form_of(kind: &str) -> Option<&'static Form> {
    let kind = JobKind::parse(kind)?;
    FORMS.iter().find(|f| f.kind == kind)
}

/// The JSON body the API would get for these form values.
fn body(form: &Form, fields: &Fields) -> Vec<u8> {
    let mut root = Map::new();
    for f in form.fields {
        let raw = fields.get(f.name);
        let value = match (f.input, raw) {
            (Input::Check { .. }, v) => Value::Bool(v.is_some()),
            (Input::Text { required: true }, v) => Value::String(v.unwrap_or_default().into()),
            (Input::Text { .. } | Input::Password, None | Some("")) => continue,
            (Input::Text { .. } | Input::Password, Some(v)) => Value::String(v.into()),
            (Input::Number { .. }, v) => match v.map(str::trim) {
                None | Some("") => continue,
                Some(n) => n
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(n.into())),
            },
        };
        insert(&mut root, f.name, value);
    }
    serde_json::to_vec(&Value::Object(root)).expect("a JSON value serializes")
}

/// Puts `value` at the dotted `path` of `root`.
fn insert(root: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            root.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let child = root
                .entry(head)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = child {
                insert(map, rest, value);
            }
        }
    }
}

/// `GET /ui/new`: the kinds of job.
pub async fn index(Extension(session): Extension<Session>) -> Response {
    if !session.is_admin() {
        return read_only_page();
    }
    let body = html! {
        h1 { "New job" }
        p { "Each form shows the plan first (a dry run: nothing is queued), then submits the job." }
        ul.kinds {
            @for f in FORMS {
                li { a href={ "/ui/new/" (f.kind.as_str()) } { strong { (f.title) } } " — " (f.intro) }
            }
        }
    };
    layout::page("New job", Some(&session), Nav::New, body)
}

/// `GET /ui/new/{kind}`: the empty form; query parameters fill fields in (links from the
/// tenants page).
pub async fn blank(
    Extension(session): Extension<Session>,
    Path(kind): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    if !session.is_admin() {
        return read_only_page();
    }
    let Some(form) = form_of(&kind) else {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such kind of job.",
        );
    };
    let prefill = Fields::parse(q.unwrap_or_default().as_bytes());
    let view = View {
        values: Values::Prefill(&prefill),
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        ..View::default()
    };
    render(form, &session, StatusCode::OK, view)
}

/// `POST /ui/new/{kind}`: `action=preview` (the dry run) or `action=submit`.
pub async fn submit(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(kind): Path<String>,
    form: TokenForm,
) -> Response {
    let TokenForm { session, fields } = form;
    if !session.is_admin() {
        return read_only_page();
    }
    let Some(spec) = form_of(&kind) else {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such kind of job.",
        );
    };
    let key = fields
        .get("idempotency_key")
        .filter(|k| uuid::Uuid::parse_str(k).is_ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let raw = body(spec, &fields);
    let mut view = View {
        values: Values::Posted(&fields),
        idempotency_key: key.clone(),
        ..View::default()
    };
    let plan = match plans::plan(&state, spec.kind, &raw).await {
        Ok(plan) => plan,
        Err(e) => return render_error(spec, &session, view, e),
    };
    if fields.get("action") != Some("submit") {
        view.preview = Some((crate::plan::preview(&plan, &state.settings), plan));
        return render(spec, &session, StatusCode::OK, view);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        "idempotency-key",
        HeaderValue::from_str(&key).expect("a UUID is a header value"),
    );
    let sub = Submission {
        caller: &session.caller(),
        request_id: &request_id,
        headers: &headers,
        route: plans::route(spec.kind),
        raw_body: &raw,
    };
    match submit::store(&state, sub, plan).await {
        Ok(stored) => see_other(&format!("/ui/jobs/{}", stored.id)),
        Err(e) => render_error(spec, &session, view, e),
    }
}

fn render_error(form: &Form, session: &Session, mut view: View, e: ApiError) -> Response {
    match &e {
        ApiError::Validation(fields) => view.field_errors = fields.clone(),
        other => view.error = Some(other.to_string()),
    }
    let status = axum::response::IntoResponse::into_response(e).status();
    render(form, session, status, view)
}

/// Where a form's values come from.
#[derive(Default)]
enum Values<'a> {
    #[default]
    Defaults,
    /// Query parameters of a link: fields they name, defaults for the rest.
    Prefill(&'a Fields),
    /// A posted form: exactly what was sent (an unchecked box is not sent).
    Posted(&'a Fields),
}

#[derive(Default)]
struct View<'a> {
    values: Values<'a>,
    idempotency_key: String,
    field_errors: Vec<FieldError>,
    error: Option<String>,
    preview: Option<(Vec<StepPreview>, Plan)>,
}

impl View<'_> {
    fn text(&self, name: &str) -> Option<&str> {
        match &self.values {
            Values::Defaults => None,
            Values::Prefill(f) | Values::Posted(f) => f.get(name),
        }
    }

    fn checked(&self, name: &str, default: bool) -> bool {
        match &self.values {
            Values::Posted(f) => f.get(name).is_some(),
            Values::Prefill(f) => f.get(name).map_or(default, |v| v != "false"),
            Values::Defaults => default,
        }
    }

    /// The errors of a field (and, for `operators`, of the group the field is in).
    fn errors(&self, name: &str) -> Vec<&str> {
        self.field_errors
            .iter()
            .filter(|e| e.field == name)
            .map(|e| e.message.as_str())
            .collect()
    }
}

fn render(form: &Form, session: &Session, status: StatusCode, view: View) -> Response {
    let kind = form.kind.as_str();
    let known: Vec<&str> = form
        .fields
        .iter()
        .flat_map(|f| [f.name, f.name.split('.').next().unwrap_or(f.name)])
        .collect();
    let elsewhere: Vec<&FieldError> = view
        .field_errors
        .iter()
        .filter(|e| !known.contains(&e.field.as_str()))
        .collect();
    let body = html! {
        h1 { (form.title) }
        p { (form.intro) }
        @if !view.field_errors.is_empty() {
            div.error-box role="alert" {
                p { strong { "The request is invalid:" } " see the fields marked below." }
                @for e in &elsewhere { p { (e.field) ": " (e.message) } }
            }
        }
        @if let Some(e) = &view.error { div.error-box role="alert" { p { (e) } } }
        form.job-form method="post" action={ "/ui/new/" (kind) } novalidate {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="idempotency_key" value=(view.idempotency_key);
            (fields(form, &view))
            div.actions {
                button type="submit" name="action" value="preview" class=[view.preview.is_none().then_some("primary")] {
                    "Preview plan"
                }
            }
            @if let Some((steps, plan)) = &view.preview {
                (preview(steps, plan))
                div.actions {
                    button.primary type="submit" name="action" value="submit" autofocus { "Submit job" }
                }
            }
        }
    };
    layout::page_with_status(status, form.title, Some(session), Nav::New, body)
}

fn fields(form: &Form, view: &View) -> Markup {
    let mut out = Vec::new();
    let mut group: Option<&str> = None;
    let mut members: Vec<&Field> = Vec::new();
    let flush = |group: Option<&str>, members: &mut Vec<&Field>, out: &mut Vec<Markup>| {
        if let Some(g) = group {
            out.push(fieldset(g, members, view));
        }
        members.clear();
    };
    for f in form.fields {
        let g = f.name.split_once('.').map(|(g, _)| g);
        if g != group {
            flush(group, &mut members, &mut out);
            group = g;
        }
        match g {
            Some(_) => members.push(f),
            None => out.push(field(f, view)),
        }
    }
    flush(group, &mut members, &mut out);
    html! { @for m in out { (m) } }
}

fn fieldset(group: &str, members: &[&Field], view: &View) -> Markup {
    let (legend, hint) = match group {
        "operators" => (
            "Operators",
            "None checked: the configured default operators.",
        ),
        _ => (
            "Resources",
            "Empty fields take the defaults (not for an update).",
        ),
    };
    let errors = view.errors(group);
    html! {
        fieldset.group aria-describedby={ "h-" (group) } {
            legend { (legend) }
            span.hint id={ "h-" (group) } { (hint) }
            @for e in &errors { span.error-text role="alert" { (e) } }
            div.group-fields { @for f in members { (field(f, view)) } }
        }
    }
}

fn field(f: &Field, view: &View) -> Markup {
    let id = format!("f-{}", f.name.replace('.', "-"));
    let errors = view.errors(f.name);
    let described = super::jobs::described_by(&id, !f.hint.is_empty(), !errors.is_empty());
    let invalid = (!errors.is_empty()).then_some("true");
    let required = matches!(
        f.input,
        Input::Text { required: true } | Input::Number { required: true }
    );
    html! {
        div class={ "field" @if matches!(f.input, Input::Check { .. }) { " check" } } {
            @match f.input {
                Input::Check { checked } => {
                    input type="checkbox" id=(id) name=(f.name) value="true" checked[view.checked(f.name, checked)]
                        aria-describedby=[described.clone()] aria-invalid=[invalid];
                    label for=(id) { (f.label) }
                }
                _ => {
                    label for=(id) { (f.label) @if required { span.req { " (required)" } } }
                    @let kind = match f.input { Input::Password => "password", _ => "text" };
                    @let mode = match f.input { Input::Number { .. } => Some("numeric"), _ => None };
                    input type=(kind) id=(id) name=(f.name) value=[view.text(f.name)] inputmode=[mode]
                        spellcheck="false" autocomplete=(if kind == "password" { "new-password" } else { "off" })
                        aria-describedby=[described] aria-invalid=[invalid];
                }
            }
            @if !f.hint.is_empty() { span.hint id={ "h-" (id) } { (f.hint) } }
            @for e in &errors { span.error-text id={ "e-" (id) } { (e) } }
        }
    }
}

fn preview(steps: &[StepPreview], plan: &Plan) -> Markup {
    let inputs = serde_json::to_string_pretty(&plan.inputs).unwrap_or_default();
    html! {
        section.plan #plan aria-labelledby="plan-title" {
            h2 #plan-title { "Plan" }
            p { "A dry run: nothing is queued until you submit. The job runs these steps, in order:" }
            ol.plan-steps {
                @for s in steps {
                    li {
                        strong { (s.name) }
                        @if let Some(c) = &s.command { pre.code { (c) } }
                        @if let Some(m) = &s.manifest_preview { details { summary { "Manifest" } pre.code { (m) } } }
                        @if let Some(p) = &s.policy_preview { details { summary { "RBAC policy" } pre.code { (p) } } }
                        @if let Some(n) = &s.note { p.muted { (n) } }
                    }
                }
            }
            details { summary { "Resolved inputs" } pre.code { (inputs) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_become_the_apis_json_bodies() {
        let form = form_of("bootstrap_user").unwrap();
        let fields = Fields::parse(
            b"username=alice&namespace=&password=&operators.mongodb=true&resources.cpu_cores=4&resources.ram_mb=lots&csrf=x",
        );
        let sent: Value = serde_json::from_slice(&body(form, &fields)).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({
                "username": "alice",
                "operators": {"postgresql": false, "mysql": false, "mongodb": true},
                "take_ownership": false,
                "resources": {"cpu_cores": 4, "ram_mb": "lots"},
            })
        );
        let delete = form_of("delete_user").unwrap();
        let sent: Value = serde_json::from_slice(&body(delete, &Fields::parse(b""))).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"username": "", "remove_namespace": false,
                               "keep_namespace": false, "force": false})
        );
        assert!(form_of("nope").is_none());
        assert_eq!(FORMS.len(), JobKind::ALL.len());
    }
}
