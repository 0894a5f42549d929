"""The base of every error the command line reports as one line (`gene-assets: MESSAGE`, exit status 2)."""


class GeneAssetsError(Exception):
    """Input or a command the user can fix; the message names the file, gene, model or URL and what to do."""


class UsageError(GeneAssetsError, ValueError):
    """A command that cannot run as given; the message says what to change."""
