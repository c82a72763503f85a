//! The form of each kind of job: its fields, how each is entered, and the JSON path it fills.

use crate::domain::JobKind;

/// How a field is entered, and how it goes into the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
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

/// One field of a form.
#[derive(Clone, Copy)]
pub struct Field {
    /// The JSON path (`resources.cpu_cores`), also the form field's name and where the API's
    /// field errors point.
    pub name: &'static str,
    pub label: &'static str,
    pub input: Input,
    pub hint: &'static str,
}

/// The form of one kind of job.
pub struct Form {
    pub kind: JobKind,
    pub title: &'static str,
    pub intro: &'static str,
    pub fields: &'static [Field],
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

pub const FORMS: &[Form] = &[
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

pub fn form_of(kind: &str) -> Option<&'static Form> {
    let kind = JobKind::parse(kind)?;
    FORMS.iter().find(|f| f.kind == kind)
}
