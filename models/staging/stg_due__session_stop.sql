{{ due_event_view('_session.stop') }}
