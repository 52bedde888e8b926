"""What every controller shares: the window it serves (its widgets, models and message bar)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt6.QtCore import QObject

if TYPE_CHECKING:  # pragma: no cover
    from backline.host.mainwindow import MainWindow


class Controller(QObject):
    """A part of the main window's behaviour. A child QObject of the window, so it lives and dies with it."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window

    def show_message(self, level: str, text: str) -> None:
        self.window.show_message(level, text)

    def status(self, text: str, msecs: int = 0) -> None:
        self.window.statusBar().showMessage(text, msecs)
