"""The tweeter's commands: each one an ad-hoc command with a form (XEP-0050)
and, from the same declaration, a chat command (``post Hello!``).

A mistake is a stanza error whose text a chat user reads after ``Error:``.
"""

from __future__ import annotations

from lxml import etree

from empc import JID, Handler, StanzaError
from empc.commands import Session, command
from empc.forms import Boolean, Form, Integer, TextMulti, TextSingle
from empc.registration import RegistrationForm
from tweeter.addresses import InvalidUser, UserTooLong, parse_user, user_key
from tweeter.microblog import MAX_POST_LENGTH, Follow, Microblog, PostRejected, Unfollow
from tweeter.payloads import Post, iso_time

DEFAULT_TIMELINE = 10
MAX_TIMELINE = 50


class PostForm(Form):
    title = "Post a status"
    text = TextMulti("Text", required=True, desc=f"1 to {MAX_POST_LENGTH} characters")


class UserForm(Form):
    user = TextSingle("User", required=True, desc="A JID, e.g. alice@localhost")


class TimelineForm(Form):
    title = "Timeline"
    count = Integer(
        "Number of posts",
        minimum=1,
        default=DEFAULT_TIMELINE,
        desc=f"The latest posts of the people you follow (at most {MAX_TIMELINE})",
    )


class DeleteForm(Form):
    title = "Delete a post"
    number = Integer("Post number", required=True, minimum=1, desc="The number after # (#3: 3)")


class AuthorForm(Form):
    title = "Posts of a user"
    user = TextSingle("User", desc="A JID, e.g. alice@localhost (default: you)")


class ProfileForm(RegistrationForm):
    """What a user registers with the tweeter (XEP-0077)."""

    title = "Your tweeter profile"
    instructions = "Choose the name your followers see, and who may follow you."
    name = TextSingle(
        "Display name", required=True, regex=r"[^\n]{1,64}", desc="1 to 64 characters"
    )
    auto_accept = Boolean("Accept new followers without asking", default=True)


class Statistics(Form):
    title = "Service statistics"
    user = TextSingle("User")
    posts = Integer("Posts")
    followers = Integer("Followers")
    following = Integer("Following")


class TweeterCommands(Handler):
    """The commands of the Tweeter handler (which it inherits)."""

    @property
    def blog(self) -> Microblog:
        raise NotImplementedError

    def user_of(self, session: Session) -> str:
        """The requester as the tweeter knows users.

        :raises StanzaError: ``forbidden`` for a server or an address at the
            component: only a server's users have microblogs.
        """
        requester = session.requester
        if not self.is_user(requester):
            raise StanzaError("forbidden", "only the users of a server may use the tweeter")
        return self.key_of(requester)

    def is_user(self, jid: JID) -> bool:
        """Whether ``jid`` is a server's user: not a server, and not an
        address at the component (answering those could start a loop)."""
        return jid.local is not None and jid.domain != self.component.domain

    def key_of(self, jid: JID) -> str:
        """The user of ``jid`` (which has a local part) as the tweeter knows users.

        :raises StanzaError: ``not-acceptable`` for a JID too long to serve.
        """
        try:
            return user_key(jid)
        except UserTooLong as e:
            raise StanzaError("not-acceptable", f"{e}.") from None

    @command("post", name="Post a status", usage="<text>")
    async def post(self, session: Session) -> str:
        user = self.user_of(session)
        form = await session.ask(PostForm, final=True)
        try:
            new, followers = await self.blog.post(user, form.text or "")
        except PostRejected as e:
            raise StanzaError("not-acceptable", f"{e}.") from None
        return f"Posted #{new.id} to {followers} follower(s)."

    @command("delete", name="Delete a post", usage="<n>")
    async def delete(self, session: Session) -> str:
        """Retract one of your posts from your microblog node: it leaves
        timelines, listings and the node (its subscribers are told)."""
        user = self.user_of(session)
        form = await session.ask(DeleteForm, final=True)
        number = form.number or 0
        if not await self.blog.delete(user, number):
            raise StanzaError("item-not-found", f"you have no post #{number}.")
        return f"Deleted #{number}."

    @command("follow", name="Follow a user", usage="<jid>")
    async def follow(self, session: Session) -> str:
        user = self.user_of(session)
        other = self._user_argument(await session.ask(UserForm, final=True), "follow")
        if other == user:
            raise StanzaError("not-allowed", "you cannot follow yourself.")
        outcome = await self.blog.follow(user, other)
        if outcome is Follow.REQUESTED:
            return f"{other} accepts followers by hand: your request was sent."
        if outcome is Follow.FOLLOWING:
            return f"You now follow {other}."
        return f"You already follow {other}."

    @command("unfollow", name="Stop following a user", usage="<jid>")
    async def unfollow(self, session: Session) -> str:
        user = self.user_of(session)
        other = self._user_argument(await session.ask(UserForm, final=True), "unfollow")
        outcome = await self.blog.unfollow(user, other)
        if outcome is Unfollow.UNFOLLOWED:
            return f"You no longer follow {other}."
        if outcome is Unfollow.WITHDRAWN:
            return f"Your request to follow {other} is withdrawn."
        return f"You do not follow {other}."

    @command("timeline", name="Your timeline", usage="[n]")
    async def timeline(self, session: Session) -> str:
        user = self.user_of(session)
        form = await session.ask(TimelineForm, final=True)
        count = min(form.count or DEFAULT_TIMELINE, MAX_TIMELINE)
        posts = await self.blog.timeline(user, count)
        if not posts:
            return "Your timeline is empty."
        return "\n".join([f"Timeline ({len(posts)} posts):", *map(_line, posts)])

    @command("posts", name="Posts of a user", usage="[jid]")
    async def posts(self, session: Session) -> str:
        user = self.user_of(session)
        form = await session.ask(AuthorForm, final=True)
        author = self._user_argument(form, "posts") if form.user else user
        found = await self.blog.posts_by(author, DEFAULT_TIMELINE, str(session.requester))
        if not found:
            return "You have not posted yet." if author == user else f"{author} has not posted yet."
        return "\n".join([f"Posts of {author} ({len(found)} posts):", *map(_line, found)])

    @command("following", name="Whom you follow")
    async def following(self, session: Session) -> str:
        people = await self.blog.store.following(self.user_of(session))
        if not people:
            return "You follow nobody yet. Send 'follow <jid>' to follow someone."
        return "\n".join([f"You follow {len(people)} user(s):", *people])

    @command("followers", name="Who follows you")
    async def followers(self, session: Session) -> str:
        people = await self.blog.store.followers(self.user_of(session))
        if not people:
            return "Nobody follows you yet."
        return "\n".join([f"{len(people)} user(s) follow you:", *people])

    @command("requests", name="Who asks to follow you")
    async def requests(self, session: Session) -> str:
        people = await self.blog.store.follow_requests(self.user_of(session))
        if not people:
            return "Nobody asks to follow you."
        return "\n".join([f"{len(people)} user(s) ask to follow you:", *people])

    @command("accept", name="Accept a follower", usage="<jid>")
    async def accept(self, session: Session) -> str:
        return await self._answer_request(session, "accept", True)

    @command("refuse", name="Refuse a follower", usage="<jid>")
    async def refuse(self, session: Session) -> str:
        return await self._answer_request(session, "refuse", False)

    async def _answer_request(self, session: Session, name: str, accept: bool) -> str:
        user = self.user_of(session)
        follower = self._user_argument(await session.ask(UserForm, final=True), name)
        if not await self.blog.answer_request(user, follower, accept):
            return f"{follower} does not ask to follow you."
        return f"{follower} now follows you." if accept else f"You refused {follower}."

    @command("stats", name="Service statistics", allow=["list:admins"])
    async def stats(self, session: Session) -> etree._Element:
        """For the config's ``admins`` list: users, posts and followers."""
        rows = await self.blog.statistics()
        posts = sum(row.posts for row in rows)
        title = f"Service statistics: {len(rows)} users, {posts} posts"
        return Statistics.table((row._asdict() for row in rows), title=title)

    def _user_argument(self, form: UserForm | AuthorForm, name: str) -> str:
        text = form.user or ""
        if len(text.split()) > 1:
            raise StanzaError(
                "bad-request", f"give one JID: '{name} <jid>', e.g. {name} alice@localhost"
            )
        try:
            return parse_user(text, self.component.domain)
        except UserTooLong as e:
            raise StanzaError("not-acceptable", f"{e}.") from None
        except InvalidUser as e:
            raise StanzaError("jid-malformed", f"{e}.") from None


def _line(post: Post) -> str:
    """One post on one line: ``<author>: <text> (#<id>, <ISO time>)``."""
    text = " ".join(post.text.split())
    return f"{post.author}: {text} (#{post.id}, {iso_time(post.published)})"


__all__ = ["TweeterCommands"]
