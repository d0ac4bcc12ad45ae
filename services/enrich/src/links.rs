//! Links into the Velociraptor GUI for an alert: its client's host page,
//! its flow's results, and the hunt its event data names. Pure.
//!
//! Every id put in a link comes from outside: one that is not made of
//! `[A-Za-z0-9._-]` (at most 128 characters) gives no link rather than a
//! link that says something else.

use serde_json::Value;
use talon_kit::config::VelociraptorConfig;
use talon_proto::{Alert, Links};

/// The `event_data` keys that name a hunt, first found wins.
pub const HUNT_KEYS: [&str; 3] = ["HuntId", "HuntID", "hunt_id"];

/// `[velociraptor]`, ready to make links.
#[derive(Debug, Clone)]
pub struct LinkRules {
    /// `gui_url` without a trailing `/`; `None`: no links.
    base: Option<String>,
    default_org: String,
}

impl LinkRules {
    pub fn new(config: &VelociraptorConfig) -> LinkRules {
        LinkRules {
            base: config.gui_base(),
            default_org: config.default_org_id.clone(),
        }
    }

    /// The links `alert` (after its overrides) can have; `None` without a
    /// `gui_url` or when it names nothing linkable.
    pub fn links(&self, alert: &Alert) -> Option<Links> {
        let base = self.base.as_deref()?;
        let org = alert
            .org_id
            .as_deref()
            .filter(|o| linkable(o))
            .unwrap_or(&self.default_org);
        let page = format!("{base}/app/index.html?org_id={org}#/");
        let client = alert.client_id.as_deref().filter(|c| linkable(c));
        let flow = alert.flow_id.as_deref().filter(|f| linkable(f));
        let hunt = HUNT_KEYS
            .iter()
            .find_map(|k| match alert.event_data.get(*k) {
                Some(Value::String(h)) if linkable(h) => Some(h.as_str()),
                _ => None,
            });
        let links = Links {
            host: client.map(|c| format!("{page}host/{c}")),
            flow: client
                .zip(flow)
                .map(|(c, f)| format!("{page}collected/{c}/{f}")),
            hunt: hunt.map(|h| format!("{page}hunts/{h}")),
        };
        (!links.is_empty()).then_some(links)
    }
}

/// Safe to put in a link as it is.
fn linkable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(gui: Option<&str>) -> LinkRules {
        LinkRules::new(&VelociraptorConfig {
            gui_url: gui.map(str::to_owned),
            default_org_id: "root".into(),
        })
    }

    fn alert(client: Option<&str>, flow: Option<&str>, org: Option<&str>) -> Alert {
        Alert {
            client_id: client.map(str::to_owned),
            flow_id: flow.map(str::to_owned),
            org_id: org.map(str::to_owned),
            ..Alert::sample()
        }
    }

    #[test]
    fn host_flow_and_hunt_links_follow_the_gui_routes() {
        let r = rules(Some("https://vr.example.org:8889/"));
        let mut a = alert(Some("C.1234abcd"), Some("F.CQ2R1"), Some("O123"));
        a.event_data.insert("HuntId".into(), json!("H.77AB"));
        let links = r.links(&a).unwrap();
        assert_eq!(
            links.host.as_deref(),
            Some("https://vr.example.org:8889/app/index.html?org_id=O123#/host/C.1234abcd")
        );
        assert_eq!(
            links.flow.as_deref(),
            Some("https://vr.example.org:8889/app/index.html?org_id=O123#/collected/C.1234abcd/F.CQ2R1")
        );
        assert_eq!(
            links.hunt.as_deref(),
            Some("https://vr.example.org:8889/app/index.html?org_id=O123#/hunts/H.77AB")
        );
    }

    #[test]
    fn the_default_org_stands_in_and_what_is_missing_gets_no_link() {
        let r = rules(Some("https://vr.example.org"));
        let links = r.links(&alert(Some("C.1"), None, None)).unwrap();
        assert_eq!(
            links.host.as_deref(),
            Some("https://vr.example.org/app/index.html?org_id=root#/host/C.1")
        );
        assert_eq!((links.flow, links.hunt), (None, None));
        // A flow without its client has no page of its own.
        assert_eq!(r.links(&alert(None, Some("F.1"), None)), None);
        assert_eq!(r.links(&alert(None, None, None)), None);
        // No gui_url: no links at all.
        assert_eq!(rules(None).links(&alert(Some("C.1"), None, None)), None);
    }

    #[test]
    fn hostile_ids_give_no_link() {
        let r = rules(Some("https://vr.example.org"));
        for bad in [
            "C.1#/hunts/x",
            "C.1\r\nX: y",
            "",
            "C.1?org_id=evil",
            "../admin",
            "C 1",
            "C.1é",
        ] {
            assert_eq!(
                r.links(&alert(Some(bad), Some("F.1"), None)),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(r.links(&alert(Some(&"C".repeat(129)), None, None)), None);
        // A bad org falls back to the default one.
        let links = r.links(&alert(Some("C.1"), None, Some("evil#/x"))).unwrap();
        assert!(links.host.unwrap().contains("org_id=root#/host/C.1"));
        // A hunt id that is not a string, or not linkable, is left out.
        let mut a = alert(Some("C.1"), None, None);
        a.event_data.insert("HuntId".into(), json!(42));
        assert_eq!(r.links(&a).unwrap().hunt, None);
        a.event_data.insert("HuntId".into(), json!("H.1/../x"));
        assert_eq!(r.links(&a).unwrap().hunt, None);
    }
}
