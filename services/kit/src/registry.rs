//! The talon services, in one table: what the shared command line, the
//! test harness and the deploy checks need to know about each. A new
//! service is its own folder under `services/` plus one line here; the
//! deploy tests then insist on its NATS user (deploy/nats-users.conf) and
//! its compose service, so neither can be forgotten.

use crate::config::Config;

/// One talon service.
pub struct ServiceInfo {
    /// Its binary, e.g. `talon-ingest`; also the name it logs and connects
    /// to NATS with.
    pub binary: &'static str,
    /// The NATS user it connects as (deploy/nats-users.conf), and its
    /// service name in docker-compose.yml.
    pub nats_user: &'static str,
    /// Its `http_listen` key, which `--http-listen` overrides.
    pub http_listen: fn(&mut Config) -> &mut String,
}

/// Every talon service, in the order the pipeline runs them.
pub const SERVICES: [ServiceInfo; 5] = [
    ServiceInfo {
        binary: "talon-ingest",
        nats_user: "ingest",
        http_listen: |c| &mut c.ingest.http_listen,
    },
    ServiceInfo {
        binary: "talon-dedup",
        nats_user: "dedup",
        http_listen: |c| &mut c.dedup.http_listen,
    },
    ServiceInfo {
        binary: "talon-enrich",
        nats_user: "enrich",
        http_listen: |c| &mut c.enrich.http_listen,
    },
    ServiceInfo {
        binary: "talon-notify",
        nats_user: "notify",
        http_listen: |c| &mut c.notify.http_listen,
    },
    ServiceInfo {
        binary: "talon-console",
        nats_user: "console",
        http_listen: |c| &mut c.console.http_listen,
    },
];

/// The service whose binary is `binary`.
pub fn service(binary: &str) -> Option<&'static ServiceInfo> {
    SERVICES.iter().find(|s| s.binary == binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_overrides_its_own_listen_key() {
        for s in &SERVICES {
            let mut config = Config::default();
            *(s.http_listen)(&mut config) = "127.0.0.1:1".into();
            let set = [
                &config.ingest.http_listen,
                &config.dedup.http_listen,
                &config.enrich.http_listen,
                &config.notify.http_listen,
                &config.console.http_listen,
            ]
            .iter()
            .filter(|v| v.as_str() == "127.0.0.1:1")
            .count();
            assert_eq!(set, 1, "{} sets one key", s.binary);
            assert_eq!(service(s.binary).map(|f| f.nats_user), Some(s.nats_user));
        }
        assert!(service("talonctl").is_none());
    }
}
