"""The rule engine and the rules, grouped by family (one rule, one module)."""
