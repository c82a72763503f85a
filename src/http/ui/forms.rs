//! `/ui/new/{kind}`: a form for each kind of job. "Preview plan" shows the dry run, "Submit job"
//! stores the job; both turn the form into the JSON body the API takes and go through the same
//! parsing, validation and store code (`plans::plan`, `submit::store`), so that every rule and
//! every message is the API's. Field errors of a 422 are shown at their fields.

mod kinds;
mod render;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;
use serde_json::{Map, Value};

use super::layout::{self, Nav};
use super::session::{Fields, Session, TokenForm};
use super::{read_only_page, see_other};
use crate::http::middleware::RequestId;
use crate::http::submit::{self, Submission};
use crate::http::{ApiError, AppState, plans};
use kinds::{FORMS, Form, Input, form_of};
use render::{Values, View, render};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JobKind;

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
