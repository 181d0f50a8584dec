use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets the condition of `type_`; `lastTransitionTime` changes only when the status flips, so
/// a steady resource produces an identical status (and no write).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ready: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if ready { "True" } else { "False" };
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    match existing {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(jiff::Timestamp::now());
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: Time(jiff::Timestamp::now()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_only_moves_on_flips() {
        let mut c = vec![];
        set(&mut c, "Ready", false, "Pending", "m", Some(1));
        let first = c[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        set(&mut c, "Ready", false, "Other", "m2", Some(2));
        assert_eq!(c[0].last_transition_time, first);
        assert_eq!(c[0].reason, "Other");
        set(&mut c, "Ready", true, "TokenReady", "ok", Some(2));
        assert_ne!(c[0].last_transition_time, first);
        assert_eq!(c.len(), 1);
    }
}
