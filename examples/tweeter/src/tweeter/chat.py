"""The chat interface: a command in, one answer out.

A command is the first word of the message, in any case; what follows is
its argument. Every mistake gets a one-line answer starting with
``Error:``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from tweeter.addresses import InvalidUser, parse_user, shorten
from tweeter.microblog import MAX_POST_LENGTH, Microblog, PostRejected
from tweeter.payloads import iso_time
from tweeter.store import Post

DEFAULT_TIMELINE = 10
MAX_TIMELINE = 50

HELP = "\n".join(
    (
        "Commands (send them to me, one per message):",
        f"post <text>: publish a status (1 to {MAX_POST_LENGTH} characters)",
        "follow <jid>: get the posts of a user, e.g. follow alice@localhost",
        "unfollow <jid>: stop getting them",
        f"timeline [n]: the latest n posts of the people you follow"
        f" (default {DEFAULT_TIMELINE}, at most {MAX_TIMELINE})",
        f"posts [jid]: the latest {DEFAULT_TIMELINE} posts of a user (default: yours)",
        "following: the people you follow",
        "followers: the people who follow you",
        "help: this list",
    )
)

_NUMBER = re.compile(r"[0-9]+")


class CommandError(Exception):
    """A mistake in a command; the message is shown after ``Error:``."""


Command = Callable[[Microblog, str, str, str], Awaitable[str]]


async def run_command(blog: Microblog, user: str, text: str) -> str:
    """The answer to the chat message ``text`` from ``user`` (a bare JID)."""
    words = text.split(None, 1)
    if not words:
        return "Error: this message is empty. Send 'help' for the list of commands."
    name = words[0].lower()
    argument = words[1].strip() if len(words) > 1 else ""
    command = COMMANDS.get(name)
    if command is None:
        return (
            f"Error: unknown command '{shorten(words[0])}'. Send 'help' for the list of commands."
        )
    try:
        return await command(blog, user, name, argument)
    except CommandError as e:
        return f"Error: {e}"


async def post(blog: Microblog, user: str, name: str, argument: str) -> str:
    if not argument:
        raise CommandError("post what? Send 'post <text>', e.g. post Hello, world!")
    try:
        new, followers = await blog.post(user, argument)
    except PostRejected as e:
        raise CommandError(f"{e}.") from None
    return f"Posted #{new.id} to {followers} follower(s)."


async def follow(blog: Microblog, user: str, name: str, argument: str) -> str:
    other = _user_argument(blog, user, name, argument)
    if other == user:
        raise CommandError("you cannot follow yourself.")
    if await blog.store.follow(user, other):
        return f"You now follow {other}."
    return f"You already follow {other}."


async def unfollow(blog: Microblog, user: str, name: str, argument: str) -> str:
    other = _user_argument(blog, user, name, argument)
    if await blog.store.unfollow(user, other):
        return f"You no longer follow {other}."
    return f"You do not follow {other}."


async def timeline(blog: Microblog, user: str, name: str, argument: str) -> str:
    count = DEFAULT_TIMELINE
    if argument:
        if not _NUMBER.fullmatch(argument) or int(argument) < 1:
            raise CommandError(
                f"'{argument}' is not a number of posts: send 'timeline' or 'timeline <n>'"
                f" with n from 1 to {MAX_TIMELINE}."
            )
        count = min(int(argument), MAX_TIMELINE)
    posts = await blog.store.timeline(user, count)
    if not posts:
        return "Your timeline is empty."
    return "\n".join([f"Timeline ({len(posts)} posts):", *map(_line, posts)])


async def posts(blog: Microblog, user: str, name: str, argument: str) -> str:
    author = _user_argument(blog, user, name, argument) if argument else user
    found = await blog.store.posts_by(author, DEFAULT_TIMELINE)
    if not found:
        return "You have not posted yet." if author == user else f"{author} has not posted yet."
    return "\n".join([f"Posts of {author} ({len(found)} posts):", *map(_line, found)])


async def following(blog: Microblog, user: str, name: str, argument: str) -> str:
    _no_argument(name, argument)
    people = await blog.store.following(user)
    if not people:
        return "You follow nobody yet. Send 'follow <jid>' to follow someone."
    return "\n".join([f"You follow {len(people)} user(s):", *people])


async def followers(blog: Microblog, user: str, name: str, argument: str) -> str:
    _no_argument(name, argument)
    people = await blog.store.followers(user)
    if not people:
        return "Nobody follows you yet."
    return "\n".join([f"{len(people)} user(s) follow you:", *people])


async def show_help(blog: Microblog, user: str, name: str, argument: str) -> str:
    return HELP


COMMANDS: dict[str, Command] = {
    "post": post,
    "follow": follow,
    "unfollow": unfollow,
    "timeline": timeline,
    "posts": posts,
    "following": following,
    "followers": followers,
    "help": show_help,
}


def _user_argument(blog: Microblog, user: str, name: str, argument: str) -> str:
    if not argument:
        raise CommandError(f"{name} whom? Send '{name} <jid>', e.g. {name} alice@localhost")
    if len(argument.split()) > 1:
        raise CommandError(f"give one JID: '{name} <jid>', e.g. {name} alice@localhost")
    try:
        return parse_user(argument, blog.domain)
    except InvalidUser as e:
        raise CommandError(f"{e}.") from None


def _no_argument(name: str, argument: str) -> None:
    if argument:
        raise CommandError(f"'{name}' takes no argument; send just '{name}'.")


def _line(post: Post) -> str:
    """One post on one line: ``<author>: <text> (#<id>, <ISO time>)``."""
    text = " ".join(post.text.split())
    return f"{post.author}: {text} (#{post.id}, {iso_time(post.published)})"
