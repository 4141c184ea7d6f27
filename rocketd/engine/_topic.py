"""
Topic matching (AMQP rules): addresses are words separated by C{.}; in a
pattern C{*} stands for exactly one word and C{#} for zero or more words.
The empty address has no words.

L{TopicTrie} indexes many patterns so that matching an address visits only
the trie nodes that can still match it, not every pattern.
"""

from typing import Dict, List, Optional


class BadPattern(ValueError):
    """A pattern word mixes a wildcard with other characters."""


def splitWords(address: str) -> List[str]:
    """
    @return: the words of an address or pattern (none for C{""}).
    """
    if not address:
        return []
    return address.split(".")


def parsePattern(pattern: str) -> List[str]:
    """
    Split and check a topic pattern.

    @return: its words.
    @raise BadPattern: if a word contains C{*} or C{#} with other characters.
    """
    words = splitWords(pattern)
    for word in words:
        if word not in ("*", "#") and ("*" in word or "#" in word):
            raise BadPattern(f"The topic pattern word {word!r} mixes a wildcard with other characters.")
    return words


def topicMatches(patternWords: List[str], words: List[str]) -> bool:
    """
    Match one parsed pattern against an address's words (for the few
    places that test a single pattern; many patterns go in a L{TopicTrie}).
    """
    # Iterative matcher with backtracking to the last '#'.
    p = w = 0
    starP = starW = -1
    np, nw = len(patternWords), len(words)
    while True:
        if p < np and patternWords[p] == "#":
            starP, starW = p, w
            p += 1
            continue
        if p < np and w < nw and (patternWords[p] == "*" or patternWords[p] == words[w]):
            p += 1
            w += 1
            continue
        if p == np and w == nw:
            return True
        if starP >= 0 and starW < nw:
            starW += 1
            p, w = starP + 1, starW
            continue
        return False


class _Node:
    __slots__ = ("children", "values")

    def __init__(self):
        self.children: Dict[str, "_Node"] = {}
        self.values: Optional[Dict[object, None]] = None


class TopicTrie:
    """
    A set of (pattern, value) pairs, matched by address.

    Values are kept in insertion order per pattern; a value may be stored
    under several patterns.
    """

    def __init__(self):
        self._root = _Node()
        self._size = 0

    def __len__(self):
        return self._size

    def add(self, patternWords: List[str], value) -> None:
        node = self._root
        for word in patternWords:
            child = node.children.get(word)
            if child is None:
                child = node.children[word] = _Node()
            node = child
        if node.values is None:
            node.values = {}
        if value not in node.values:
            node.values[value] = None
            self._size += 1

    def remove(self, patternWords: List[str], value) -> None:
        """Remove a pair (no error if absent) and prune the emptied nodes."""
        path = [self._root]
        node = self._root
        for word in patternWords:
            node = node.children.get(word)
            if node is None:
                return
            path.append(node)
        if not node.values or value not in node.values:
            return
        del node.values[value]
        self._size -= 1
        if not node.values:
            node.values = None
        for i in range(len(patternWords) - 1, -1, -1):
            child = path[i + 1]
            if child.values is None and not child.children:
                del path[i].children[patternWords[i]]
            else:
                break

    def match(self, words: List[str]) -> Dict[object, None]:
        """
        @return: an insertion-ordered dict whose keys are the values of every
            pattern matching the address words (each once).
        """
        out: Dict[object, None] = {}
        n = len(words)
        seen = set()
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            key = (id(node), i)
            if key in seen:
                continue
            seen.add(key)
            children = node.children
            if i == n:
                if node.values:
                    out.update(node.values)
            else:
                child = children.get(words[i])
                if child is not None:
                    stack.append((child, i + 1))
                child = children.get("*")
                if child is not None:
                    stack.append((child, i + 1))
            hashNode = children.get("#")
            if hashNode is not None:
                # '#' takes zero or more words: continue after it at every
                # remaining position.
                for j in range(i, n + 1):
                    stack.append((hashNode, j))
        return out
