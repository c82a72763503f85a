//! `GET /ui/tenants`: the accounts (`everestctl accounts list`, as `GET /accounts/list`) and
//! the namespaces Everest manages (as `GET /namespaces`), each linked to its jobs.

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{self, Nav};
use super::session::Session;
use crate::domain::Username;
use crate::http::{ApiError, AppState};
use crate::passthrough::{self, Listing};

pub async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let (accounts, namespaces) = tokio::join!(
        passthrough::accounts_list(&state.settings),
        passthrough::managed_namespaces(&state.settings),
    );
    let admin = session.is_admin();
    let body = html! {
        h1 { "Tenants" }
        section aria-labelledby="accounts-title" {
            h2 #accounts-title { "Accounts" }
            @match accounts.map_err(ApiError::from) {
                Ok(listing) => (accounts_table(&listing, admin)),
                Err(e) => p.error-text role="alert" { (e.to_string()) },
            }
        }
        section aria-labelledby="namespaces-title" {
            h2 #namespaces-title { "Managed namespaces" }
            @match namespaces.map_err(ApiError::from) {
                Ok(listing) => (namespaces_table(&listing, admin)),
                Err(e) => p.error-text role="alert" { (e.to_string()) },
            }
        }
    };
    layout::page("Tenants", Some(&session), Nav::Tenants, body)
}

fn link(base: &str, name: &str, value: &str) -> String {
    super::fmt::url(base, [(name, value)])
}

fn accounts_table(listing: &Listing, admin: bool) -> Markup {
    let Some(rows) = listing.data.as_array() else {
        // The CLI printed JSON of another shape: shown as it is.
        return html! { pre.code { (serde_json::to_string_pretty(&listing.data).unwrap_or_default()) } };
    };
    html! {
        p.muted { "From " code { (listing.source) } "." }
        div.table-wrap {
            table {
                thead { tr {
                    th scope="col" { "User" } th scope="col" { "Capabilities" } th scope="col" { "Enabled" }
                    th scope="col" { "Jobs" }
                    @if admin { th scope="col" { "Change" } }
                } }
                tbody {
                    @for row in rows {
                        @let user = row["user"].as_str().unwrap_or_default();
                        // Only a valid username can be a filter or a job's subject.
                        @let valid = Username::parse(user).is_ok();
                        tr {
                            td { (user) }
                            td { (capabilities(&row["capabilities"])) }
                            td { (match row["enabled"].as_bool() { Some(true) => "yes", Some(false) => "no", None => "?" }) }
                            td { @if valid { a href=(link("/ui/jobs", "username", user)) { "Jobs about " (user) } } }
                            @if admin {
                                td.links {
                                    @if valid && user != "admin" {
                                        a href=(link("/ui/new/set_password", "username", user)) { "Password" } " "
                                        a href=(link("/ui/new/suspend_user", "username", user)) { "Suspend" } " "
                                        a href=(link("/ui/new/resume_user", "username", user)) { "Resume" } " "
                                        a href=(link("/ui/new/delete_user", "username", user)) { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn capabilities(v: &Value) -> String {
    match v.as_array() {
        Some(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        None => v.as_str().unwrap_or_default().to_string(),
    }
}

fn namespaces_table(listing: &Listing, admin: bool) -> Markup {
    let rows = listing.data.as_array().cloned().unwrap_or_default();
    html! {
        p.muted { "From " code { (listing.source) } "." }
        @if rows.is_empty() { p.muted { "Everest manages no namespace." } }
        @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Namespace" } th scope="col" { "Created" } th scope="col" { "Jobs" }
                        @if admin { th scope="col" { "Change" } }
                    } }
                    tbody {
                        @for row in &rows {
                            @let name = row["name"].as_str().unwrap_or_default();
                            tr {
                                td { (name) }
                                td { (row["created_at"].as_str().unwrap_or("—")) }
                                td { a href=(link("/ui/jobs", "namespace", name)) { "Jobs about " (name) } }
                                @if admin {
                                    td.links {
                                        a href=(link("/ui/new/update_resources", "namespace", name)) { "Resources" } " "
                                        a href=(link("/ui/new/add_operators", "namespace", name)) { "Operators" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
