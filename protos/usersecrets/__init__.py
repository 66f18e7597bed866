"""usersecrets: per-user secrets for developer platforms."""
