//! The regulation catalog: the baseline in `regulations/` (copied from the shared data set,
//! with its `SOURCES.md`), compiled into the binary, parsed once.
//!
//! Six regulations map their requirements to NIST CSF 2.0 subcategories; each mapping
//! keeps its `mapping_source`, so published mappings stay distinguishable from analyst
//! ones. Tenants add or override mappings through the API (recorded in the ledger, kept
//! in `gov_control_mappings`); [`merged_controls`] combines the two.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use aggregates::compliance::{ControlId, RegulationCode};

#[derive(Debug, Deserialize)]
struct RegulationFile {
    regulation: RegulationMeta,
    mapping_sources: BTreeMap<String, String>,
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RegulationMeta {
    pub id: String,
    pub name: String,
    pub version: String,
    pub source: String,
    pub license: String,
}

/// One requirement of a regulation, as the baseline has it.
#[derive(Debug, Clone, Deserialize)]
pub struct Requirement {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub csf: Vec<String>,
    #[serde(default)]
    pub csf_categories: Vec<String>,
    pub mapping_source: String,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CsfFile {
    functions: Vec<CsfNode>,
    categories: Vec<CsfNode>,
    subcategories: Vec<CsfNode>,
}

/// A CSF 2.0 function, category or subcategory.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CsfNode {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    pub statement: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub function: Option<String>,
}

#[derive(Debug)]
pub struct Regulation {
    pub code: RegulationCode,
    pub meta: RegulationMeta,
    pub mapping_sources: BTreeMap<String, String>,
    pub requirements: Vec<Requirement>,
    index: HashMap<String, usize>,
}

impl Regulation {
    pub fn requirement(&self, id: &str) -> Option<&Requirement> {
        self.position(id).map(|i| &self.requirements[i])
    }

    /// Where requirement `id` is in [`Regulation::requirements`].
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
}

#[derive(Debug)]
pub struct Catalog {
    pub regulations: Vec<Regulation>,
    pub functions: Vec<CsfNode>,
    pub categories: Vec<CsfNode>,
    pub subcategories: HashMap<String, CsfNode>,
    /// control id → (regulation, requirement id) of every baseline mapping onto it.
    by_control: HashMap<String, Vec<(RegulationCode, String)>>,
}

fn file(code: RegulationCode) -> &'static str {
    match code {
        RegulationCode::Soc2 => include_str!("../../regulations/soc2.json"),
        RegulationCode::Iso27001 => include_str!("../../regulations/iso27001.json"),
        RegulationCode::Hipaa => include_str!("../../regulations/hipaa.json"),
        RegulationCode::Iso42001 => include_str!("../../regulations/iso42001.json"),
        RegulationCode::EuAiAct => include_str!("../../regulations/eu_ai_act.json"),
        RegulationCode::Fedramp => include_str!("../../regulations/fedramp.json"),
    }
}

impl Catalog {
    fn load() -> Result<Self, String> {
        let csf: CsfFile = serde_json::from_str(include_str!("../../regulations/csf2.json")).map_err(|e| format!("csf2.json: {e}"))?;
        let mut regulations = Vec::new();
        let mut by_control: HashMap<String, Vec<(RegulationCode, String)>> = HashMap::new();
        for code in RegulationCode::ALL {
            let f: RegulationFile = serde_json::from_str(file(code)).map_err(|e| format!("{code}.json: {e}"))?;
            for r in &f.requirements {
                for c in &r.csf {
                    by_control.entry(c.clone()).or_default().push((code, r.id.clone()));
                }
            }
            let index = f.requirements.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();
            regulations.push(Regulation {
                code,
                meta: f.regulation,
                mapping_sources: f.mapping_sources,
                requirements: f.requirements,
                index,
            });
        }
        Ok(Self {
            regulations,
            functions: csf.functions,
            categories: csf.categories,
            subcategories: csf.subcategories.into_iter().map(|s| (s.id.clone(), s)).collect(),
            by_control,
        })
    }

    /// The catalog. The data is compiled in and checked by tests, so a failure to parse
    /// is a build defect; it yields an empty catalog rather than a panic.
    pub fn get() -> &'static Catalog {
        static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
            Catalog::load().unwrap_or_else(|e| {
                tracing::error!(error = %e, "the compiled-in regulation catalog does not parse");
                Catalog {
                    regulations: vec![],
                    functions: vec![],
                    categories: vec![],
                    subcategories: HashMap::new(),
                    by_control: HashMap::new(),
                }
            })
        });
        &CATALOG
    }

    pub fn regulation(&self, code: RegulationCode) -> Option<&Regulation> {
        self.regulations.iter().find(|r| r.code == code)
    }

    /// A CSF subcategory that exists (not only one shaped like one).
    pub fn control(&self, id: &ControlId) -> Option<&CsfNode> {
        self.subcategories.get(id.as_str())
    }

    pub fn baseline_mappings_to(&self, control: &str) -> &[(RegulationCode, String)] {
        self.by_control.get(control).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// One requirement → control link, from the baseline or the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ControlLink {
    pub control_id: String,
    /// `baseline` or `tenant`.
    pub source: &'static str,
    /// Baseline: the data set's `mapping_source` (published, derived or analyst).
    pub mapping_source: Option<String>,
    /// Tenant: `subset`, `intersects`, `equal` or `superset` (NIST IR 8477).
    pub relation: Option<String>,
    pub rationale: Option<String>,
    /// Set when the tenant marked this link not applicable to it: the rationale. Such a
    /// link is shown but carries no evidence to the requirement.
    pub not_applicable: Option<String>,
}

/// A tenant's mapping, as far as merging needs it.
#[derive(Debug, Clone)]
pub struct TenantLink {
    pub regulation: String,
    pub requirement_id: String,
    pub control_id: String,
    pub relation: String,
    pub rationale: String,
    /// A not-applicable mark on the link (`relation` is then empty).
    pub not_applicable: bool,
}

impl From<projections::compliance::TenantMappingView> for TenantLink {
    fn from(m: projections::compliance::TenantMappingView) -> Self {
        Self {
            regulation: m.regulation,
            requirement_id: m.requirement_id,
            control_id: m.control_id,
            relation: m.relation,
            rationale: m.rationale,
            not_applicable: false,
        }
    }
}

impl From<projections::compliance_review::ExclusionView> for TenantLink {
    fn from(m: projections::compliance_review::ExclusionView) -> Self {
        Self {
            regulation: m.regulation,
            requirement_id: m.requirement_id,
            control_id: m.control_id,
            relation: String::new(),
            rationale: m.rationale,
            not_applicable: true,
        }
    }
}

/// The requirement's controls: the baseline's, with tenant links added or overriding
/// the baseline link to the same control, and the tenant's not-applicable marks set on
/// the links they name.
pub fn merged_controls(requirement: &Requirement, tenant: &[TenantLink]) -> Vec<ControlLink> {
    let mut out: Vec<ControlLink> = requirement
        .csf
        .iter()
        .map(|c| ControlLink {
            control_id: c.clone(),
            source: "baseline",
            mapping_source: Some(requirement.mapping_source.clone()),
            relation: None,
            rationale: None,
            not_applicable: None,
        })
        .collect();
    let (marks, links): (Vec<&TenantLink>, Vec<&TenantLink>) =
        tenant.iter().filter(|t| t.requirement_id == requirement.id).partition(|t| t.not_applicable);
    for t in links {
        let link = ControlLink {
            control_id: t.control_id.clone(),
            source: "tenant",
            mapping_source: None,
            relation: Some(t.relation.clone()),
            rationale: Some(t.rationale.clone()),
            not_applicable: None,
        };
        match out.iter_mut().find(|l| l.control_id == t.control_id) {
            Some(existing) => *existing = link,
            None => out.push(link),
        }
    }
    for m in marks {
        if let Some(link) = out.iter_mut().find(|l| l.control_id == m.control_id) {
            link.not_applicable = Some(m.rationale.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checks of `regulations/check.py`, on the compiled-in copy.
    #[test]
    fn the_compiled_in_catalog_passes_the_data_checks() {
        let c = Catalog::load().unwrap();
        assert_eq!((c.functions.len(), c.categories.len(), c.subcategories.len()), (6, 22, 106));
        for s in c.subcategories.values() {
            assert!(ControlId::parse(&s.id).is_ok(), "{}", s.id);
            assert!(c.categories.iter().any(|k| Some(&k.id) == s.category.as_ref()), "{}", s.id);
            assert!(!s.statement.is_empty());
        }
        let expected = [
            (RegulationCode::Fedramp, Some(323), r"^[A-Z]{2}-\d+(\(\d+\))?$"),
            (RegulationCode::Iso27001, Some(93), r"^A\.[5-8]\.\d+$"),
            (RegulationCode::Soc2, Some(61), r"^(CC[1-9]|A1|C1|PI1|P[1-8])\.\d+$"),
            (RegulationCode::Hipaa, Some(68), r"^164\.3(08|10|12|14|16)(\([a-z0-9]+\))+(\([A-Z]\))?$"),
            (RegulationCode::Iso42001, Some(38), r"^A\.(10|[2-9])\.\d+(\.\d+)?$"),
            (RegulationCode::EuAiAct, None, r"^Art\.\d+$"),
        ];
        for (code, count, pattern) in expected {
            let r = c.regulation(code).unwrap();
            let re = regex::Regex::new(pattern).unwrap();
            if let Some(n) = count {
                assert_eq!(r.requirements.len(), n, "{code}");
            }
            let mut ids: Vec<&str> = r.requirements.iter().map(|q| q.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), r.requirements.len(), "{code}: unique ids");
            for q in &r.requirements {
                assert!(re.is_match(&q.id), "{code}: {}", q.id);
                assert!(!q.title.is_empty(), "{code}: {}", q.id);
                let mut csf = q.csf.clone();
                csf.sort_unstable();
                csf.dedup();
                assert_eq!(csf.len(), q.csf.len(), "{code} {}: duplicate csf ids", q.id);
                for x in &q.csf {
                    assert!(c.subcategories.contains_key(x), "{code} {}: unknown {x}", q.id);
                }
                for x in &q.csf_categories {
                    assert!(c.categories.iter().any(|k| &k.id == x), "{code} {}: unknown category {x}", q.id);
                }
                assert!(r.mapping_sources.contains_key(&q.mapping_source), "{code} {}: {}", q.id, q.mapping_source);
                let mapped = !q.csf.is_empty() || !q.csf_categories.is_empty();
                assert_eq!(mapped, q.mapping_source != "none", "{code} {}: mapping_source vs csf", q.id);
            }
        }
    }

    #[test]
    fn a_tenant_link_overrides_the_baseline_link_to_the_same_control_and_adds_others() {
        let c = Catalog::load().unwrap();
        let req = c.regulation(RegulationCode::Soc2).unwrap().requirement("CC1.1").unwrap();
        let first = req.csf[0].clone();
        let tenant = vec![
            TenantLink {
                regulation: "soc2".into(),
                requirement_id: "CC1.1".into(),
                control_id: first.clone(),
                relation: "equal".into(),
                rationale: "ours".into(),
                not_applicable: false,
            },
            TenantLink {
                regulation: "soc2".into(),
                requirement_id: "CC1.1".into(),
                control_id: "DE.CM-01".into(),
                relation: "subset".into(),
                rationale: "x".into(),
                not_applicable: false,
            },
            TenantLink {
                regulation: "soc2".into(),
                requirement_id: "CC9.9".into(),
                control_id: "DE.CM-02".into(),
                relation: "subset".into(),
                rationale: "x".into(),
                not_applicable: false,
            },
        ];
        let merged = merged_controls(req, &tenant);
        assert_eq!(merged.len(), req.csf.len() + 1);
        let overridden = merged.iter().find(|l| l.control_id == first).unwrap();
        assert_eq!((overridden.source, overridden.relation.as_deref()), ("tenant", Some("equal")));
        assert!(merged.iter().filter(|l| l.source == "baseline").all(|l| l.mapping_source.as_deref() == Some("analyst")));
    }

    #[test]
    fn a_not_applicable_mark_flags_the_link_it_names_and_nothing_else() {
        let c = Catalog::load().unwrap();
        let req = c.regulation(RegulationCode::Soc2).unwrap().requirement("CC6.1").unwrap();
        let mark = |control: &str| TenantLink {
            regulation: "soc2".into(),
            requirement_id: "CC6.1".into(),
            control_id: control.into(),
            relation: String::new(),
            rationale: "no VPN".into(),
            not_applicable: true,
        };
        let merged = merged_controls(req, &[mark(&req.csf[0]), mark("RC.RP-06")]);
        assert_eq!(merged.len(), req.csf.len(), "a mark adds no link");
        assert_eq!(
            merged.iter().filter(|l| l.not_applicable.is_some()).map(|l| l.control_id.as_str()).collect::<Vec<_>>(),
            vec![req.csf[0].as_str()]
        );
    }
}
