//! One alert in, the enriched alert and its channels out: overrides,
//! severity, context, client details, routing. Pure: the client lookup is
//! handed in.

use talon_kit::config::Config;
use talon_proto::{Alert, ClientInfo};

use crate::context::ContextRules;
use crate::links::LinkRules;
use crate::overrides::apply_overrides;
use crate::route::Routes;
use crate::severity::Severity;

/// Everything `[enrich]` and `[[channels]]` say, compiled.
pub struct Rules {
    pub severity: Severity,
    pub context: ContextRules,
    pub routes: Routes,
    pub links: LinkRules,
}

impl Rules {
    /// The regexes were validated when the config was loaded.
    pub fn new(config: &Config) -> Result<Rules, regex::Error> {
        Ok(Rules {
            severity: Severity::new(config.enrich.severity_transforms.as_deref())?,
            context: ContextRules::new(&config.enrich)?,
            routes: Routes::new(&config.channels, &config.enrich.severity_levels)?,
            links: LinkRules::new(&config.velociraptor),
        })
    }
}

/// Enriches `alert`; `lookup` gives a client's details by id. The
/// channels are also in the alert's `routed_to`.
pub fn enrich(
    mut alert: Alert,
    rules: &Rules,
    lookup: impl Fn(&str) -> Option<ClientInfo>,
) -> (Alert, Vec<String>) {
    apply_overrides(&mut alert);
    let decided = rules.severity.decide(&alert.event_data);
    let context = match &decided {
        Some((_, member)) => {
            let mut data = alert.event_data.clone();
            // shift_remove keeps the order of the other keys (remove would
            // swap the last key into its place).
            data.shift_remove(member);
            rules.context.build(&data)
        }
        None => rules.context.build(&alert.event_data),
    };
    alert.context = Some(context);
    alert.severity = decided.map(|(severity, _)| severity);
    alert.client = alert.client_id.as_deref().and_then(lookup);
    alert.links = rules.links.links(&alert);
    let channels: Vec<String> = rules
        .routes
        .route(&alert.name, alert.severity.as_deref())
        .into_iter()
        .map(str::to_owned)
        .collect();
    alert.routed_to = Some(channels.clone());
    (alert, channels)
}
