"""The main window's controllers: one per seam of the window, each owning the behaviour of its part.

`MainWindow` builds the widgets and wires signals to these; the controllers hold no widgets of their own and
reach the window's through `self.window`. The arrows run one way: window → controllers → models (`DawLink`,
`CaptureModel`, `JobClient`, `SessionStore`). A controller asks another for what it owns (the job controller
asks the take list to add a card) through the window's attributes of the same name:

    daw_control      DawController       the DAW strip, transport events, /backline/region and /generate, input
    capture_control  CaptureController   the captured mix (live or file), tempo, chord lane and bar selection
    job_control      JobController       engine tabs, Generate, progress, cancel and the job worker's answers
    take_list        TakeListController  the take cards: history, play, recall, regenerate, re-render, export
"""

from backline.host.controllers.capture import CaptureController
from backline.host.controllers.daw import DawController
from backline.host.controllers.jobs import Job, JobController
from backline.host.controllers.takes import MAX_CARDS, TakeListController

__all__ = ["MAX_CARDS", "CaptureController", "DawController", "Job", "JobController", "TakeListController"]
