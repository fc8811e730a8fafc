"""Private helpers shared by the skconcepts modules (torch, validation, testing)."""
