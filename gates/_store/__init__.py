"""The state store: modes, verdicts, the audit log and signed verdicts."""
