"""Redis key names, in one place.

Every key of one user's secrets carries the user's id as a Redis Cluster hash tag, `{<uid>}`, so each
request's script touches one hash slot. Identity keys that are looked up by something other than the user id
(a username, a token id) live in their own slots and are read with single-key commands.

    us:user:{<uid>}            hash   id, username, roles (comma-separated), created_at (µs)
    us:username:<lowercase>    string the user id
    us:users                   set    every user id (for key rotation and consistency checks)
    us:token:<token id>        hash   user_id, hash (hex SHA-256 of the secret part), created_at, expires_at (µs)
    us:{<uid>}:secret:<name>   hash   id, name, description, env_name, file_path, created_at, updated_at,
                                      value (ciphertext bytes), key_id, value_len
    us:{<uid>}:names           zset   every secret name, score 0: ZRANGE gives byte order
    us:{<uid>}:env             hash   env_name -> secret name (non-empty env_names only)
    us:{<uid>}:files           hash   file_path -> secret name (non-empty file_paths only)
    us:{<uid>}:usage           hash   bytes (all values), env_bytes (values of secrets with an env_name)
"""

from __future__ import annotations

PREFIX = "us"
USERS = f"{PREFIX}:users"


def user(uid: str) -> str:
    return f"{PREFIX}:user:{{{uid}}}"


def username(name: str) -> str:
    return f"{PREFIX}:username:{name.lower()}"


def token(token_id: str) -> str:
    return f"{PREFIX}:token:{token_id}"


def secret_prefix(uid: str) -> str:
    """Prefix of a user's secret keys; the Lua scripts append the name."""
    return f"{PREFIX}:{{{uid}}}:secret:"


def secret(uid: str, name: str) -> str:
    return secret_prefix(uid) + name


def names(uid: str) -> str:
    return f"{PREFIX}:{{{uid}}}:names"


def env_index(uid: str) -> str:
    return f"{PREFIX}:{{{uid}}}:env"


def file_index(uid: str) -> str:
    return f"{PREFIX}:{{{uid}}}:files"


def usage(uid: str) -> str:
    return f"{PREFIX}:{{{uid}}}:usage"
