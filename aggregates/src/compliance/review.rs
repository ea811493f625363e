//! What a workflow records after creation: changes to its scope, owner and due date, the
//! auditor's findings, and the certification with the statuses it was granted on.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codes::RequirementId;
use super::status::RequirementStatus;
use super::workflow::Scope;
use crate::ids::{Actor, Reason};

/// A change to a workflow after creation: only the fields given change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<NaiveDate>,
}

impl WorkflowChange {
    pub fn is_empty(&self) -> bool {
        self.scope.is_none() && self.owner.is_none() && self.due_date.is_none()
    }
}

/// A short recorded item the auditor raises when sending a workflow back to remediation;
/// closed by evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub finding_id: Uuid,
    pub title: Reason,
    pub owner: Actor,
    pub due_date: NaiveDate,
}

/// One requirement's status as certified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedStatus {
    pub requirement_id: RequirementId,
    pub status: RequirementStatus,
}

/// The certification: the statuses the workflow was certified with (derived as of
/// `as_of`) and the last day it is valid; after it, the regulation needs re-certification
/// (a new workflow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certification {
    pub as_of: NaiveDate,
    pub valid_until: NaiveDate,
    pub statuses: Vec<CertifiedStatus>,
}
