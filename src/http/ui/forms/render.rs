//! A form on its page: the fields with their values, hints and errors, and the plan of a
//! preview.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::kinds::{Field, Form, Input};
use crate::domain::{FieldError, Plan};
use crate::http::ui::layout::{self, Nav};
use crate::http::ui::session::{Fields, Session};
use crate::plan::StepPreview;

/// Where a form's values come from.
#[derive(Default)]
pub enum Values<'a> {
    #[default]
    Defaults,
    /// Query parameters of a link: fields they name, defaults for the rest.
    Prefill(&'a Fields),
    /// A posted form: exactly what was sent (an unchecked box is not sent).
    Posted(&'a Fields),
}

#[derive(Default)]
pub struct View<'a> {
    pub values: Values<'a>,
    pub idempotency_key: String,
    pub field_errors: Vec<FieldError>,
    pub error: Option<String>,
    pub preview: Option<(Vec<StepPreview>, Plan)>,
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

pub fn render(form: &Form, session: &Session, status: StatusCode, view: View) -> Response {
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
    let described =
        crate::http::ui::jobs::described_by(&id, !f.hint.is_empty(), !errors.is_empty());
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
