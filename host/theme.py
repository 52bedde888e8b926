"""The dark theme: the charcoal-and-amber look of a mixing desk at night, so Backline sits quietly beside a DAW.

Colours are named by role, not by hue, and every custom-painted widget (waveforms, piano rolls, meters)
takes them from here so the app stays consistent.
"""

from __future__ import annotations

from PyQt6.QtGui import QColor, QFont, QPalette
from PyQt6.QtWidgets import QApplication

BG = "#15171c"  # window
PANEL = "#1d2027"  # cards, panels
PANEL_HI = "#252932"  # hovered/selected panel
INSET = "#101216"  # waveform background, inputs
BORDER = "#2e333d"
TEXT = "#e6e8ec"
TEXT_DIM = "#8c93a1"
ACCENT = "#f2a33a"  # amber: generate, selection, playhead
ACCENT_DIM = "#7a5420"
OK = "#4cc38a"
WARN = "#e8c547"
ERROR = "#ef5b5b"
WAVE = "#5fb3d9"  # captured mix
WAVE_TAKE = "#9ad06c"  # generated take
GRID_BAR = "#3a404c"
GRID_BEAT = "#23272f"
#: one colour per engine tab, used for take cards and piano rolls
ENGINE_COLOURS = {"bass": "#9ad06c", "accompany": "#b58cf0", "drums": "#f07f6a"}


def engine_colour(name: str) -> QColor:
    return QColor(ENGINE_COLOURS.get(name, WAVE_TAKE))


STYLESHEET = f"""
QWidget {{ color: {TEXT}; font-size: 10pt; }}
QMainWindow, QDialog, QMenuBar, QMenu, QStatusBar, QMessageBox {{ background: {BG}; }}
QMenuBar::item:selected, QMenu::item:selected {{ background: {PANEL_HI}; }}
QToolTip {{ background: {PANEL_HI}; color: {TEXT}; border: 1px solid {BORDER}; padding: 4px; }}
QFrame#Panel, QFrame#Card, QFrame#Header {{ background: {PANEL}; border: 1px solid {BORDER}; border-radius: 8px; }}
QFrame#Card[status="error"] {{ border: 1px solid {ERROR}; }}
QFrame#Card[status="pending"] {{ border: 1px dashed {ACCENT_DIM}; }}
QFrame#Card[selected="true"] {{ border: 1px solid {ACCENT}; }}
QFrame#Header QLabel, QFrame#Panel QLabel, QFrame#Card QLabel {{ background: transparent; }}
QLabel#Title {{ font-size: 15pt; font-weight: 700; color: {TEXT}; letter-spacing: 1px; }}
QLabel#Section {{ color: {TEXT_DIM}; font-size: 8pt; font-weight: 700; letter-spacing: 1px; }}
QLabel#Dim {{ color: {TEXT_DIM}; }}
QLabel#Value {{ font-weight: 600; }}
QLabel#Big {{ font-size: 13pt; font-weight: 700; font-family: "DejaVu Sans Mono", monospace; }}
QLabel#Badge {{ background: {PANEL_HI}; border: 1px solid {BORDER}; border-radius: 9px; padding: 1px 8px;
               color: {TEXT_DIM}; font-size: 8pt; }}
QLabel#Fit {{ background: #1f3a2c; border: 1px solid {OK}; border-radius: 9px; padding: 1px 8px; color: {OK};
             font-size: 8pt; font-weight: 700; }}
QLabel#Chip {{ background: {PANEL_HI}; border: 1px solid {ACCENT_DIM}; border-radius: 6px; padding: 3px 10px;
              color: {ACCENT}; font-weight: 700; font-size: 9pt; }}
QLabel#Chip:hover {{ border: 1px solid {ACCENT}; background: #30281c; }}
QLabel#Chip:disabled {{ color: {TEXT_DIM}; border-color: {BORDER}; }}
QLabel#Error {{ color: {ERROR}; }}
QFrame#MessageBar {{ border-radius: 6px; padding: 2px; }}
QFrame#MessageBar[level="error"] {{ background: #3a1f22; border: 1px solid {ERROR}; }}
QFrame#MessageBar[level="warning"] {{ background: #3a3420; border: 1px solid {WARN}; }}
QFrame#MessageBar[level="info"] {{ background: #1f2e3a; border: 1px solid {WAVE}; }}
QFrame#MessageBar QLabel {{ background: transparent; }}
QPushButton, QToolButton {{ background: {PANEL_HI}; border: 1px solid {BORDER}; border-radius: 5px;
                           padding: 5px 12px; color: {TEXT}; }}
QPushButton:hover, QToolButton:hover {{ border-color: {TEXT_DIM}; }}
QPushButton:pressed, QToolButton:pressed, QToolButton:checked {{ background: {ACCENT_DIM}; }}
QPushButton:disabled, QToolButton:disabled {{ color: #5a606c; }}
QPushButton#Generate {{ background: {ACCENT}; color: #1a1308; font-weight: 800; font-size: 11pt;
                       border: none; padding: 8px 18px; }}
QPushButton#Generate:hover {{ background: #ffb54f; }}
QPushButton#Generate:disabled {{ background: {ACCENT_DIM}; color: #3a2a12; }}
QPushButton#Danger {{ border-color: {ERROR}; color: {ERROR}; }}
QTabWidget::pane {{ border: 1px solid {BORDER}; border-radius: 8px; background: {PANEL}; top: -1px; }}
QTabBar::tab {{ background: {BG}; color: {TEXT_DIM}; padding: 7px 16px; border: 1px solid {BORDER};
               border-bottom: none; border-top-left-radius: 6px; border-top-right-radius: 6px; margin-right: 2px; }}
QTabBar::tab:selected {{ background: {PANEL}; color: {TEXT}; border-top: 2px solid {ACCENT}; }}
QScrollArea, QScrollArea > QWidget > QWidget {{ background: transparent; }}
QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox, QListWidget, QPlainTextEdit {{
    background: {INSET}; border: 1px solid {BORDER}; border-radius: 4px; padding: 3px 5px;
    selection-background-color: {ACCENT_DIM}; }}
QListWidget::item {{ padding: 2px 4px; }}
QListWidget::item:selected {{ background: {ACCENT_DIM}; color: {TEXT}; }}
QComboBox QAbstractItemView {{ background: {PANEL}; border: 1px solid {BORDER}; }}
QSlider::groove:horizontal {{ height: 4px; background: {INSET}; border-radius: 2px; }}
QSlider::sub-page:horizontal {{ background: {ACCENT_DIM}; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: {ACCENT}; width: 12px; margin: -5px 0; border-radius: 6px; }}
QCheckBox::indicator {{ width: 14px; height: 14px; border: 1px solid {BORDER}; border-radius: 3px;
                       background: {INSET}; }}
QCheckBox::indicator:checked {{ background: {ACCENT}; }}
QProgressBar {{ background: {INSET}; border: 1px solid {BORDER}; border-radius: 4px; text-align: center;
               color: {TEXT}; height: 16px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 3px; }}
QScrollBar:vertical {{ background: {BG}; width: 10px; }}
QScrollBar::handle:vertical {{ background: {BORDER}; border-radius: 4px; min-height: 24px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ height: 0; width: 0; }}
QStatusBar {{ color: {TEXT_DIM}; }}
QSplitter::handle {{ background: {BG}; }}
"""


def apply(app: QApplication) -> None:
    """Fusion style + dark palette (so native dialogs match) + the stylesheet."""
    app.setStyle("Fusion")
    palette = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, BG), (QPalette.ColorRole.WindowText, TEXT), (QPalette.ColorRole.Base, INSET),
        (QPalette.ColorRole.AlternateBase, PANEL), (QPalette.ColorRole.Text, TEXT),
        (QPalette.ColorRole.Button, PANEL_HI), (QPalette.ColorRole.ButtonText, TEXT),
        (QPalette.ColorRole.Highlight, ACCENT_DIM), (QPalette.ColorRole.HighlightedText, TEXT),
        (QPalette.ColorRole.ToolTipBase, PANEL_HI), (QPalette.ColorRole.ToolTipText, TEXT),
        (QPalette.ColorRole.PlaceholderText, TEXT_DIM),
    ):
        palette.setColor(role, QColor(colour))
    app.setPalette(palette)
    font = QFont("DejaVu Sans")
    font.setPointSize(10)
    app.setFont(font)
    app.setStyleSheet(STYLESHEET)
    app.setProperty("backline_theme", True)


def apply_once() -> None:
    """Apply the theme to the running QApplication unless it already has it (windows made by tests, embedders)."""
    app = QApplication.instance()
    if app is not None and app.property("backline_theme") is None:
        apply(app)
        app.setProperty("backline_theme", True)
