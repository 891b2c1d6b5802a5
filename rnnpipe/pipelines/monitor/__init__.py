"""The monitoring pipeline (`monitor`): early warning on patients' vital signs."""
