"""The quickstart's interactive part: one run shown with its labels, and a panel to run again.

`show_run` displays what `emostyle.pipeline.manipulate` wrote for one song: the song and the
composed music as labelled players, the lyrics and their polarity, the image before and
after with its valence, and the loss curves. `Panel` is an ipywidgets form around the same
call (a song from the kit's list or any file, optionally your photo, the method, the loss
weights, the steps) that says while it runs, and shows each result the same way. Both need a
Jupyter kernel.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from . import figures, samples
from .guidance import METHODS
from .spaces.affect import audio_caption, audio_summary

__all__ = ["before_after_figure", "show_run", "Panel"]


def _valence(v: dict, which: str) -> str:
    """An image's valence as the judge reads it (a model that did not guide it), then as the
    guidance space, the guiding model, reads it."""
    return f"valence: judge {figures.signed(v[which])} · space {figures.signed(v['in_guidance_space'][which])}"


def before_after_figure(manifest: dict, out: str | Path, note: str | None = None) -> plt.Figure:
    """The start image (retrieved, or the reconstruction of the user's photo) and the manipulated
    one side by side, titled with the song, its polarity, the method and the valence of each
    (a manipulate() folder)."""
    from PIL import Image

    out, v, p = Path(out), manifest["valence"], manifest["polarity"]
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 4.2))
    start = "reconstruction" if manifest.get("inversion") else "retrieved"
    titles = (f"{start} (before)\n{_valence(v, 'before')}",
              f"{METHODS[manifest['method']].title} (after)\n{_valence(v, 'after')}")
    for ax, name, title in zip(axes, ("before.png", "after.png"), titles):
        ax.imshow(Image.open(out / name)), ax.set_title(title, fontsize=8.5), ax.axis("off")
    heard = f" · {audio_caption(manifest['audio'])}" if manifest.get("audio") else ""
    fig.suptitle(f"song: {Path(manifest['song']).stem} · lyrics {p.get('emotion', p['label'])} ({p['score']:+.2f})"
                 f"{heard}", fontsize=11)
    note = figures.judge_note(v["judge"] or "none", (v["before"], v["after"])) + (f"\n{note}" if note else "")
    fig.tight_layout(rect=(0, figures.note_height(fig, note), 1, 0.93))  # room for the song's line on top
    figures.stamp(fig, note)
    return fig


def show_run(manifest: dict, out: str | Path, note: str | None = None) -> plt.Figure:
    """Display one manipulate() result in the page (players, lyrics, figures); returns the
    before/after figure so the caller can save it, then close it."""
    from IPython.display import Audio, Markdown, display
    from PIL import Image

    def player(path: str):  # a manifest's paths are as the run was given them: relative to where it ran
        if Path(path).is_file():
            return Audio(filename=path)
        return Markdown(f"*(no player: `{path}` is not found from here, {Path.cwd()}; a relative path is "
                        "relative to where the run was made)*")

    lyrics, p = manifest["lyrics"], manifest["polarity"]
    display(Markdown(f"**song** `{Path(manifest['song']).name}` (the input A)"), player(manifest["song"]))
    display(Markdown(f"**composed music** (M, from the lyrics' polarity; {manifest['music']['renderer']})"),
            player(manifest["music"]["wav"]))
    display(Markdown(f"**lyrics** ({lyrics['source']}): {lyrics['text'] or '(none heard)'}  \n"
                     f"**polarity**: {p['label']} ({p['backend']}, score {p['score']:+.2f})"))
    if manifest.get("audio"):
        display(Markdown(f"**audio** (A, read by {manifest['audio']['reader']}): {audio_summary(manifest['audio'])}"))
    fig = before_after_figure(manifest, out, note)
    display(fig)  # explicitly: plt.show() is not flushed from a widget's callback; the caller closes it
    display(Markdown("**step by step** (the judge's valence under each frame: when the emotion moved)"),
            Image.open(Path(out) / "frames.png"))
    display(Markdown("**loss terms per step** (each term of Eq. 4-8 unweighted, its weight in the legend)"),
            Image.open(Path(out) / "loss.png"))
    return fig


class Panel:
    """A form around `manipulate`: song, photo, method, l_Aud / l_Mus / l_Tex, steps, Run.

    `Panel(config, out_dir).widget` is the ipywidgets box to display. Each press of Run writes
    into `out_dir/run-<n>` and shows the result below the form."""

    def __init__(self, config, out_dir: str | Path, note: str | None = None):
        import ipywidgets as w

        self.config, self.out_dir, self.note, self.runs = config, Path(out_dir), note, 0
        choices = [(f"{s.name} (kit song)", str(s.path)) for s in samples.songs()]
        self.song = w.Dropdown(options=choices, description="song", layout=w.Layout(width="420px"))
        self.own = w.Text(placeholder="or the path of your own audio file", description="own song",
                          layout=w.Layout(width="420px"))
        self.photo = w.Text(placeholder="empty: a retrieved image; or the path of your photo",
                            description="photo", layout=w.Layout(width="420px"))
        self.method = w.Dropdown(options=[(m.title, k) for k, m in METHODS.items()], value="emostyle",
                                 description="method")
        g = config.guidance
        self.weights = {k: w.FloatSlider(value=getattr(g, k), min=0, max=1, step=0.05, description=label,
                                         continuous_update=False)
                        for k, label in (("l_aud", "l_Aud"), ("l_mus", "l_Mus"), ("l_tex", "l_Tex"))}
        self.steps = w.IntSlider(value=g.steps, min=5, max=300, step=5, description="steps", continuous_update=False)
        self.button = w.Button(description="Run", button_style="primary", icon="play")
        self.status = w.HTML("press Run")
        self.output = w.Output()
        self.button.on_click(self._run)
        self.method.observe(self._weights_apply, names="value")
        self._weights_apply()
        self.widget = w.VBox([self.song, self.own, self.photo, self.method, *self.weights.values(), self.steps,
                              w.HBox([self.button, self.status]), self.output])

    def _weights_apply(self, _=None) -> None:
        # The weights are EmoStyle's; the other methods fix theirs (paper 4.2, 4.3).
        for slider in self.weights.values():
            slider.disabled = self.method.value != "emostyle"

    def overrides(self) -> dict:
        """The config changes the form asks for."""
        extra = {"guidance.steps": self.steps.value}
        if self.method.value == "emostyle":
            extra |= {f"guidance.{k}": s.value for k, s in self.weights.items()}
        return extra

    def _run(self, _=None) -> None:
        from .pipeline import manipulate

        song = self.own.value.strip() or self.song.value
        self.runs += 1
        out = self.out_dir / f"run-{self.runs}"
        self.button.disabled = True
        self.status.value = (f"<b>running</b> {self.method.label} on {Path(song).name}, "
                             f"{self.steps.value} steps ... (the kernel is busy)")
        with self.output:
            self.output.clear_output()
            try:
                manifest = manipulate(song, profile=self.config.with_overrides(self.overrides()),
                                      method=self.method.value, out=out, progress=False, force=True,  # its own folder
                                      image=self.photo.value.strip() or None)
                plt.close(show_run(manifest, out, self.note))
                self.status.value = f"done: run {self.runs} in {out}"
            except (ValueError, FileNotFoundError, RuntimeError) as error:
                self.status.value = f"<b>error</b>: {error}"  # one line, no traceback
            finally:
                self.button.disabled = False
