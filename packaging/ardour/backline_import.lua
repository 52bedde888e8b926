ardour {
	["type"]    = "EditorAction",
	name        = "Backline: import take",
	license     = "MIT",
	author      = "Backline",
	description = [[Import a take Backline wrote (its audio as a new track, its MIDI as another) at the position
it was generated for. Pick the take's report, ENGINE_seedN.json, in the take's folder (the desktop app writes
each job into SESSION/takes/<job>/).]]
}

-- Backline's one take writer (backline.engines.core.takes) opens every take's report with a flat "daw" block:
--   "daw": {"version": 1, "audio": "bass_seed3.wav", "midi": "bass_seed3.mid", "sample_rate": 48000,
--           "start_sample": ..., "start_seconds": ..., "start_bar": ..., "bpm": ..., "meter": [4, 4], ...}
-- File names are relative to the report. Positions are on the timeline the take was generated on: Ardour's own
-- when Backline captured the mix live from this session. Install: copy this file into Ardour's scripts folder
-- (~/.config/ardour8/scripts/ on Linux), then Edit > Lua Scripts > Script Manager > add an action.

function factory () return function ()

	local function read_take (path)
		local f = io.open (path, "rb")
		if not f then return nil end
		local text = f:read ("a")
		f:close ()
		local block = text:match ('^%s*{%s*"daw"%s*:%s*(%b{})')
		if not block then return nil end
		local folder = path:match ("^(.*)[/\\][^/\\]*$") or "."
		local function str (key) return block:match ('"' .. key .. '"%s*:%s*"([^"]*)"') end
		local function num (key) return tonumber (block:match ('"' .. key .. '"%s*:%s*([%-%d%.eE+]+)')) end
		local take = { audio = str ("audio"), midi = str ("midi"), start_seconds = num ("start_seconds"),
		               start_bar = num ("start_bar") }
		if not (take.audio or take.midi) then return nil end
		if take.audio then take.audio = folder .. "/" .. take.audio end
		if take.midi then take.midi = folder .. "/" .. take.midi end
		return take
	end

	local home = os.getenv ("HOME") or os.getenv ("USERPROFILE") or "."
	local takes_dir = (os.getenv ("BACKLINE_SESSION_DIR") or (home .. "/Music/Backline/Session")) .. "/takes"
	local dialog = LuaDialog.Dialog ("Backline: import a take", {
		{ type = "file", key = "report", title = "Take report (ENGINE_seedN.json)", path = takes_dir },
		{ type = "checkbox", key = "at_take", default = true,
		  title = "At the take's position (else at the playhead)" },
	})
	local rv = dialog:run ()
	if not rv or not rv["report"] or rv["report"] == "" then return end

	local take = read_take (rv["report"])
	if not take then
		LuaDialog.Message ("Backline", rv["report"] .. " is not a Backline take report (ENGINE_seedN.json).",
			LuaDialog.MessageType.Error, LuaDialog.ButtonType.Close):run ()
		return
	end

	-- seconds, not the take's samples: the session may run at another rate than the take was generated at
	local sample = Session:transport_sample ()
	if rv["at_take"] and take.start_seconds then
		sample = math.floor (take.start_seconds * Session:nominal_sample_rate () + 0.5)
	end
	local files = C.StringVector ()
	if take.audio then files:push_back (take.audio) end
	if take.midi then files:push_back (take.midi) end
	local pos = Temporal.timepos_t (sample)
	Editor:do_import (files,
		Editing.ImportDistinctFiles, Editing.ImportAsTrack, ARDOUR.SrcQuality.SrcBest,
		ARDOUR.MidiTrackNameSource.SMFTrackName, ARDOUR.MidiTempoMapDisposition.SMFTempoIgnore,
		pos, ARDOUR.PluginInfo (), ARDOUR.Track (), false)

end end
