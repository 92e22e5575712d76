"""The audits: one package per audit on one base class (`base.Audit`); see docs/architecture.md."""
