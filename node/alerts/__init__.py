"""Document-fraud alerts: the signed alert model, the raiser's log and its
subscription stream, the subscriber side, and local checks against received alerts."""
