//! Pure decisions of the rules: whether a rule as written is acceptable, and whether a rule
//! decides a sale. Nothing here touches the database, so all of it is unit-tested below.

use jiff::tz::TimeZone;

use super::windows::{in_any_window, MAX_WINDOWS};
use super::{NewRule, RuleError, RulePatch, SpendRule};
use crate::customers::ladder::Ladder;

/// Priorities are kept to a range that sorts the same in every database.
const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;

impl NewRule {
    /// Refuses a rule that breaks a rule of the API or names a tier or access level the
    /// tenant's ladder does not have.
    pub(super) fn check(&self, ladder: &Ladder) -> Result<(), RuleError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(RuleError::Invalid("name must be 1-100 characters".into()));
        }
        if ladder.tier_rank(&self.tier).is_none() {
            return Err(RuleError::UnknownTier(
                self.tier.clone(),
                ladder.tiers.join(", "),
            ));
        }
        if let Some(level) = &self.access_level {
            if ladder.access_rank(level).is_none() {
                return Err(RuleError::UnknownAccessLevel(
                    level.clone(),
                    ladder.access_levels.join(", "),
                ));
            }
        }
        if !PRIORITY_RANGE.contains(&self.priority) {
            return Err(RuleError::Invalid(
                "priority must be between -1000000 and 1000000".into(),
            ));
        }
        if self.time_windows.len() > MAX_WINDOWS {
            return Err(RuleError::Invalid(format!(
                "a rule may have at most {MAX_WINDOWS} time windows"
            )));
        }
        if let Some(p) = &self.performer_id {
            if p.trim().is_empty() || p.chars().count() > 100 {
                return Err(RuleError::Invalid(
                    "performer_id must be 1-100 characters".into(),
                ));
            }
        }
        Ok(())
    }

    /// The rule with the patch's fields replacing its own.
    pub(super) fn apply(mut self, patch: RulePatch) -> Self {
        if let Some(v) = patch.name {
            self.name = v;
        }
        if let Some(v) = patch.threshold {
            self.threshold = v;
        }
        if let Some(v) = patch.tier {
            self.tier = v;
        }
        if let Some(v) = patch.access_level {
            self.access_level = v;
        }
        if let Some(v) = patch.priority {
            self.priority = v;
        }
        if let Some(v) = patch.enabled {
            self.enabled = v;
        }
        if let Some(v) = patch.live_only {
            self.live_only = v;
        }
        if let Some(v) = patch.time_windows {
            self.time_windows = v;
        }
        if let Some(v) = patch.performer_id {
            self.performer_id = v;
        }
        self
    }
}

/// Refuses a venue name outside 1-100 characters.
pub(super) fn check_venue(venue: &str) -> Result<(), RuleError> {
    if venue.is_empty() || venue.chars().count() > 100 {
        return Err(RuleError::Invalid("venue must be 1-100 characters".into()));
    }
    Ok(())
}

/// What one rule says about a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RuleFit {
    /// The rule decides the sale.
    Fits,
    /// It does not: the next rule is asked.
    Misses,
    /// Only the performers on at the venue at the sale's time can tell: ask again with them.
    NeedsPerformers,
}

/// Whether `rule` decides a sale made at `occurred_at` (µs; windows read in the venue's
/// zone `tz`) that brought the customer's lifetime spend at the venue to `spend`: the
/// threshold is reached, the sale falls in one of its windows, and, for live-only and
/// performer rules, a performance (by that performer) was on. `performers` is `None` until
/// they were looked up, which only happens when a rule needs them.
pub(super) fn fit(
    rule: &SpendRule,
    spend: i64,
    tz: &TimeZone,
    occurred_at: i64,
    performers: Option<&[&str]>,
) -> RuleFit {
    if spend < rule.threshold || !in_any_window(&rule.time_windows, tz, occurred_at) {
        return RuleFit::Misses;
    }
    if !rule.live_only && rule.performer_id.is_none() {
        return RuleFit::Fits;
    }
    let Some(on) = performers else {
        return RuleFit::NeedsPerformers;
    };
    let wrong_performer = rule
        .performer_id
        .as_deref()
        .is_some_and(|p| !on.contains(&p));
    if (rule.live_only && on.is_empty()) || wrong_performer {
        RuleFit::Misses
    } else {
        RuleFit::Fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::NonNegativeAmount;

    fn rule(threshold: i64) -> SpendRule {
        SpendRule {
            id: "r1".into(),
            venue: "main".into(),
            name: "Gold at 100".into(),
            threshold,
            tier: "gold".into(),
            access_level: None,
            priority: 0,
            enabled: true,
            live_only: false,
            time_windows: Vec::new(),
            performer_id: None,
            times_triggered: 0,
            customers_unlocked: 0,
            last_triggered: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn ladder() -> Ladder {
        Ladder::from_stored(
            Some(r#"["bronze","silver","gold"]"#.into()),
            Some(r#"["standard","backstage"]"#.into()),
        )
    }

    fn new_rule() -> NewRule {
        NewRule {
            name: "Gold".into(),
            threshold: NonNegativeAmount::try_from(10_000).unwrap(),
            tier: "gold".into(),
            access_level: None,
            priority: 0,
            enabled: true,
            live_only: false,
            time_windows: Vec::new(),
            performer_id: None,
        }
    }

    /// 2024-05-03 (a Friday) 21:00 UTC, in µs.
    const FRIDAY_NINE_PM: i64 = 1_714_770_000_000_000;

    #[test]
    fn the_threshold_is_reached_at_equality() {
        let utc = TimeZone::UTC;
        assert_eq!(
            fit(&rule(100), 99, &utc, FRIDAY_NINE_PM, None),
            RuleFit::Misses
        );
        assert_eq!(
            fit(&rule(100), 100, &utc, FRIDAY_NINE_PM, None),
            RuleFit::Fits
        );
        assert_eq!(fit(&rule(0), 0, &utc, FRIDAY_NINE_PM, None), RuleFit::Fits);
    }

    #[test]
    fn windows_are_read_in_the_venue_zone() {
        let mut weekend_nights = rule(0);
        weekend_nights.time_windows = serde_json::from_value(serde_json::json!([
            {"days": ["fri", "sat"], "start": "20:00", "end": "02:00"}
        ]))
        .unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(
            fit(&weekend_nights, 0, &utc, FRIDAY_NINE_PM, None),
            RuleFit::Fits
        );
        // 21:00 UTC is 17:00 in New York: outside the window.
        let new_york = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            fit(&weekend_nights, 0, &new_york, FRIDAY_NINE_PM, None),
            RuleFit::Misses
        );
    }

    #[test]
    fn live_and_performer_rules_ask_for_performers_only_when_otherwise_a_match() {
        let utc = TimeZone::UTC;
        let mut live = rule(100);
        live.live_only = true;
        assert_eq!(fit(&live, 50, &utc, FRIDAY_NINE_PM, None), RuleFit::Misses);
        assert_eq!(
            fit(&live, 100, &utc, FRIDAY_NINE_PM, None),
            RuleFit::NeedsPerformers
        );
        assert_eq!(
            fit(&live, 100, &utc, FRIDAY_NINE_PM, Some(&[])),
            RuleFit::Misses
        );
        assert_eq!(
            fit(&live, 100, &utc, FRIDAY_NINE_PM, Some(&["dj"])),
            RuleFit::Fits
        );

        let mut headliner = rule(0);
        headliner.performer_id = Some("star".into());
        assert_eq!(
            fit(&headliner, 0, &utc, FRIDAY_NINE_PM, None),
            RuleFit::NeedsPerformers
        );
        assert_eq!(
            fit(&headliner, 0, &utc, FRIDAY_NINE_PM, Some(&["dj"])),
            RuleFit::Misses
        );
        assert_eq!(
            fit(&headliner, 0, &utc, FRIDAY_NINE_PM, Some(&["dj", "star"])),
            RuleFit::Fits
        );
    }

    #[test]
    fn new_rules_are_checked_against_the_ladder() {
        assert!(new_rule().check(&ladder()).is_ok());
        let mut unknown = new_rule();
        unknown.tier = "platinum".into();
        assert!(matches!(
            unknown.check(&ladder()),
            Err(RuleError::UnknownTier(..))
        ));
        let mut access = new_rule();
        access.access_level = Some("vip-room".into());
        assert!(matches!(
            access.check(&ladder()),
            Err(RuleError::UnknownAccessLevel(..))
        ));
        access.access_level = Some("backstage".into());
        assert!(access.check(&ladder()).is_ok());
        let mut blank = new_rule();
        blank.name = "   ".into();
        assert!(matches!(blank.check(&ladder()), Err(RuleError::Invalid(_))));
        let mut extreme = new_rule();
        extreme.priority = 1_000_001;
        assert!(matches!(
            extreme.check(&ladder()),
            Err(RuleError::Invalid(_))
        ));
        let mut performer = new_rule();
        performer.performer_id = Some(" ".into());
        assert!(matches!(
            performer.check(&ladder()),
            Err(RuleError::Invalid(_))
        ));
        assert!(check_venue("").is_err());
        assert!(check_venue(&"v".repeat(101)).is_err());
        assert!(check_venue("main").is_ok());
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let patch: RulePatch =
            serde_json::from_value(serde_json::json!({"priority": 5, "access_level": null}))
                .unwrap();
        let mut rule = new_rule();
        rule.access_level = Some("backstage".into());
        let patched = rule.apply(patch);
        assert_eq!(patched.priority, 5);
        assert_eq!(patched.access_level, None);
        assert_eq!(patched.tier, "gold");
        assert_eq!(patched.name, "Gold");
        let untouched = new_rule().apply(RulePatch::default());
        assert_eq!(untouched.priority, 0);
        assert_eq!(untouched.tier, "gold");
    }
}
